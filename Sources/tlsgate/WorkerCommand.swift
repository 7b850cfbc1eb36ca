import ArgumentParser
import Dispatch
import FoundationEssentials

#if canImport(Glibc)
import Glibc
#endif
import Logging
import NIOConcurrencyHelpers
import NIOCore
import TLSGatePolicy
import TLSGateRelay
import TLSGateSystem

/// `tlsgate worker`: serves one policy. Started by the supervisor with an inherited
/// listening socket; for tests and manual runs it can bind an address itself.
struct WorkerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "worker",
        abstract: "Serve one policy on one listening socket (started by `tlsgate run`).",
        discussion: """
            A worker accepts redirected connections, reads each one's original destination, \
            refuses any that its policy does not cover or that points at the gateway itself, \
            and relays the rest over verified TLS. It logs one line per connection.
            """,
        shouldDisplay: false
    )

    @Option(help: ArgumentHelp("The policy file to serve (when not given one on --control-fd).", valueName: "file"))
    var policy: String?

    @Option(help: ArgumentHelp(
        "Read the validated policy (one JSON line) from this descriptor; exit when it closes.", valueName: "fd"))
    var controlFd: Int32?

    @Flag(help: "TPROXY: the accepted socket's local address is the original destination.")
    var transparent = false

    @Option(help: ArgumentHelp("Bind and listen here, e.g. 0.0.0.0:8080 or [::]:8080.", valueName: "host:port"))
    var listen: String?

    @Option(help: ArgumentHelp("Serve an inherited, listening socket.", valueName: "fd"))
    var listenFd: Int32?

    @Option(help: "Event loop threads (default: one per CPU this process may use).")
    var threads: Int?

    @Option(help: ArgumentHelp("How long open connections may finish after SIGTERM, e.g. 30s.", valueName: "duration"))
    var drainTimeout: String = "30s"

    @Flag(help: "Do not install the seccomp syscall filter (debugging only; the supervisor never passes this).")
    var noSeccomp = false

    @OptionGroup var logging: LoggingOptions

    func validate() throws {
        if (policy == nil) == (controlFd == nil) {
            throw ValidationError("give exactly one of --policy FILE and --control-fd N")
        }
        switch (listen, listenFd) {
        case (nil, nil): throw ValidationError("give --listen HOST:PORT or --listen-fd N")
        case (.some, .some): throw ValidationError("give only one of --listen and --listen-fd")
        case (.some(let text), nil):
            guard Self.parseListen(text) != nil else {
                throw ValidationError("--listen \"\(text)\" is not HOST:PORT (IPv6 as [ADDR]:PORT)")
            }
        case (nil, .some(let fd)):
            guard fd >= 0 else { throw ValidationError("--listen-fd must be a descriptor number") }
        }
        guard TimeSpan(drainTimeout) != nil else {
            throw ValidationError("--drain-timeout \"\(drainTimeout)\" is not a duration like 30s")
        }
    }

    func run() throws {
        // The supervisor spawns workers with no capability at all; say so if one came along.
        let inheritedCapabilities = Privileges.holdsAnyCapability
        // No capability, no way to regain one, not dumpable, before the first untrusted byte.
        do {
            try Privileges.dropAllForWorker()
        } catch {
            StandardStream.error("tlsgate worker: \(error)\n")
            throw ExitCode(1)
        }
        let fileLimit = Privileges.raiseFileLimit()
        logging.bootstrap()
        let logger = Logger(label: "tlsgate.worker")

        let loaded: Policy
        var transparent = self.transparent
        var drain = TimeSpan(drainTimeout)!
        var threadCount = threads
        if let controlFd {
            guard let assignment = Self.readAssignment(from: controlFd) else {
                StandardStream.error("tlsgate worker: no valid policy on descriptor \(controlFd)\n")
                throw ExitCode(2)
            }
            loaded = assignment.policy
            transparent = transparent || assignment.mode == .tproxy
            drain = assignment.drainTimeout
            if assignment.threads > 0 { threadCount = assignment.threads }
        } else {
            let (policy, diagnostics) = PolicyLoader.loadFile(policy!, tlsCheck: PolicyTLSCheck.check)
            for diagnostic in diagnostics {
                StandardStream.error("\(diagnostic)\n")
            }
            guard let policy, !diagnostics.contains(where: { $0.severity == .error }) else {
                throw ExitCode(2)
            }
            loaded = policy
        }
        let target: WorkerListen
        if let fd = listenFd {
            target = .descriptor(fd)
        } else {
            let (host, port) = Self.parseListen(listen!)!
            target = .address(host: host, port: port)
        }
        // threads = 0 (the default): one event loop per CPU the process may run on, after
        // its affinity mask and cgroup cpuset/quota, not per core of the machine.
        let cpus = CPUs.current()
        var options = WorkerOptions(listen: target, threads: threadCount.flatMap { $0 > 0 ? $0 : nil } ?? cpus.usable, transparent: transparent)
        options.drainTimeout = .milliseconds(drain.milliseconds)
        // Under traffic, relay buffers (up to 64 KiB each, freed and allocated again all the
        // time) stay in the heap instead of going back to the kernel and being faulted in
        // and zeroed again (gateway CPU per GB 2.68 -> 2.46-2.53 s in the bench's A/B);
        // `releaseHeapWhenQuiet` below gives them back once the traffic stops.
        FreeHeap.keepForRelaying()

        let worker: Worker
        do {
            worker = try Worker(policy: loaded, options: options, logger: logger)
        } catch {
            StandardStream.error("tlsgate worker: \(error)\n")
            Self.report(.failed("\(error)"), on: controlFd)
            throw ExitCode(2)
        }
        // The policy, its TLS context and the event loop threads are set up: from here on
        // the worker only accepts, connects and relays. The filter is in force on every
        // thread before the first connection is accepted.
        let dumpable = Privileges.isDumpable  // prctl is not on the filter's list
        if !noSeccomp {
            do {
                try SyscallFilter.installForWorker()
            } catch {
                StandardStream.error("tlsgate worker: \(error)\n")
                Self.report(.failed("\(error)"), on: controlFd)
                throw ExitCode(1)
            }
        }
        let address: SocketAddress
        do {
            // Under the supervisor it accepts only once told to (after its predecessor on
            // the same socket stopped); run by hand it accepts at once.
            address = try worker.start(accepting: controlFd == nil)
        } catch {
            StandardStream.error("tlsgate worker: \(error)\n")
            Self.report(.failed("\(error)"), on: controlFd)
            throw ExitCode(1)
        }
        // Every line about this worker's life says which worker it is.
        let identity: Logger.Metadata = [
            "policy": "\(loaded.name)", "pid": "\(ProcessInfo.processInfo.processIdentifier)",
        ]
        logger.info(
            "worker listening",
            metadata: identity.merging([
                "listen": "\(address.logText)", "open_files_limit": "\(fileLimit)",
                "mode": "\(transparent ? "tproxy" : "redirect")",
                "threads": "\(options.threads)", "cpus": "\(cpus)",
                "inherited_capabilities": "\(inheritedCapabilities ? "some" : "none")",
                "dumpable": "\(dumpable)", "seccomp": "\(noSeccomp ? "off" : "on")",
            ]) { $1 })
        // The supervisor retires the worker this one replaces only after this line, and
        // answers `accept` once that one has stopped accepting.
        Self.report(.ready, on: controlFd)
        // What loading the policy and setting up TLS left free goes back to the kernel, and
        // so does what traffic left once it stops (checked twice a second).
        FreeHeap.release()
        worker.releaseHeapWhenQuiet(every: .milliseconds(500))
        if let controlFd {
            // Running totals for the supervisor's metrics: what changed, once a second.
            worker.reportStats(every: .seconds(1)) { changed in
                for line in WorkerStats.reports(changed) { Self.report(line, on: controlFd) }
            }
        }

        let stopped = DispatchSemaphore(value: 0)
        // Signals and the control pipe can race (two SIGTERMs, SIGTERM then the supervisor
        // gone): only the first one stops the worker; the others are logged and ignored.
        let stopping = NIOLockedValueBox(false)
        let firstStop: @Sendable () -> Bool = { stopping.withLockedValue { was -> Bool in defer { was = true }; return !was } }
        signal(SIGPIPE, SIG_IGN)
        var sources: [DispatchSourceSignal] = []
        for sig in [SIGTERM, SIGINT] {
            signal(sig, SIG_IGN)
            // A serial queue: a second signal waits for the first handler to return.
            let source = DispatchSource.makeSignalSource(signal: sig, queue: DispatchQueue(label: "tlsgate.worker.signal"))
            source.setEventHandler {
                guard firstStop() else {
                    logger.info("worker already stopping", metadata: identity.merging(["signal": "\(sig)"]) { $1 })
                    return
                }
                logger.info(
                    "worker stopping",
                    metadata: identity.merging(["signal": "\(sig)", "open_connections": "\(worker.activeConnections)"]) { $1 })
                let cut = worker.shutdown(stoppedAccepting: { Self.report(.draining, on: controlFd) })
                Self.reportFinalStats(worker, on: controlFd)
                logger.info("worker stopped", metadata: identity.merging(["cut_connections": "\(cut)"]) { $1 })
                stopped.signal()
            }
            source.resume()
            sources.append(source)
        }
        if let controlFd {
            // The supervisor holds the other end: `accept` lets this worker accept; EOF means
            // the supervisor is gone, and so must we be.
            DispatchQueue(label: "tlsgate.worker.control").async {
                var chunk = [UInt8](repeating: 0, count: 4096)
                var buffer: [UInt8] = []
                reading: while true {
                    let n = chunk.withUnsafeMutableBytes { read(controlFd, $0.baseAddress, $0.count) }
                    if n < 0 && errno == EINTR { continue }
                    if n <= 0 { break }
                    buffer += chunk[0..<n]
                    while true {
                        switch SupervisorMessage.parse(buffer) {
                        case .incomplete:
                            continue reading
                        case .invalid(let why, let consumed):
                            logger.error("ignoring a control message", metadata: identity.merging(["error": "\(why)"]) { $1 })
                            buffer.removeFirst(consumed)
                        case .message(let message, let consumed):
                            buffer.removeFirst(consumed)
                            switch message {
                            case .accept: worker.beginAccepting()
                            case .destinations(let networks): worker.updateDestinations(networks)
                            }
                        }
                    }
                }
                guard firstStop() else { return }
                logger.warning(
                    "supervisor gone; worker stopping",
                    metadata: identity.merging(["open_connections": "\(worker.activeConnections)"]) { $1 })
                let cut = worker.shutdown()
                logger.info("worker stopped", metadata: identity.merging(["cut_connections": "\(cut)"]) { $1 })
                stopped.signal()
            }
        }
        stopped.wait()
        _ = sources
    }

    /// Serializes writes to the control channel (the stats timer, the signal handler).
    private static let reportLock = NIOLock()

    /// Tells the supervisor (the other end of the control channel) how the start went,
    /// that it stopped accepting, or its totals: one whole line per write.
    static func report(_ report: WorkerReport, on fd: Int32?) {
        guard let fd else { return }
        let line = report.line
        reportLock.withLock {
            _ = line.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        }
    }

    /// The totals as they stand after the drain, so the supervisor counts every connection.
    static func reportFinalStats(_ worker: Worker, on fd: Int32?) {
        for line in WorkerStats.reports(worker.stats.changes()) { report(line, on: fd) }
    }

    /// Reads one JSON line from `fd`.
    static func readAssignment(from fd: Int32) -> WorkerAssignment? {
        var data = Data()
        var byte: UInt8 = 0
        while data.count < 1 << 20 {
            let n = read(fd, &byte, 1)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 || byte == 0x0a { break }
            data.append(byte)
        }
        return try? JSONDecoder().decode(WorkerAssignment.self, from: data)
    }

    static func parseListen(_ text: String) -> (String, Int)? {
        let host: Substring
        let portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { return nil }
            host = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":") else { return nil }
            portText = rest.dropFirst()
        } else {
            guard let colon = text.lastIndex(of: ":") else { return nil }
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
        }
        guard !host.isEmpty, let port = Int(portText), (0...65535).contains(port) else { return nil }
        return (String(host), port)
    }
}
