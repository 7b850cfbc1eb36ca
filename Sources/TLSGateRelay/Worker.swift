import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import TLSGatePolicy
import TLSGateSystem
import TLSGateTLS

/// How a worker gets its listening socket.
public enum WorkerListen: Sendable, Equatable {
    /// Bind and listen here (tests, manual runs).
    case address(host: String, port: Int)
    /// An already bound and listening socket inherited from the supervisor.
    case descriptor(Int32)
}

public struct WorkerOptions: Sendable {
    public var listen: WorkerListen
    /// Event loop threads; by default one per CPU the process may use (`CPUs.current()`).
    public var threads: Int
    /// How long a stopping worker lets open connections finish.
    public var drainTimeout: TimeAmount
    /// TPROXY: take the original destination from the socket's local address.
    public var transparent: Bool

    public init(
        listen: WorkerListen, threads: Int = CPUs.current().usable, drainTimeout: TimeAmount = .seconds(30),
        transparent: Bool = false
    ) {
        self.listen = listen
        self.transparent = transparent
        self.threads = max(1, threads)
        self.drainTimeout = drainTimeout
    }
}

/// Why a worker could not start.
public struct WorkerError: Error, Sendable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

extension Channel {
    /// The channel's options, set at once (on its event loop, before or after it is
    /// registered): every NIOPosix socket channel has them.
    func socketOptions() throws -> NIOSynchronousChannelOptions {
        guard let options = syncOptions else { throw WorkerError("\(type(of: self)) has no socket options") }
        return options
    }
}

/// Serves one policy on one listening socket: accepts redirected connections and relays
/// each one to its original destination over verified TLS.
public final class Worker: Sendable {
    public let policy: Policy
    private let options: WorkerOptions
    private let logger: Logger
    private let shared: WorkerShared
    private let group: MultiThreadedEventLoopGroup
    private let serverChannel = NIOLockedValueBox<Channel?>(nil)
    private let addressRefresh = NIOLockedValueBox<RepeatedTask?>(nil)
    private let statsTask = NIOLockedValueBox<RepeatedTask?>(nil)
    private let heapTask = NIOLockedValueBox<RepeatedTask?>(nil)

    public init(policy: Policy, options: WorkerOptions, logger: Logger) throws {
        let tlsContext: TLSContext
        do {
            tlsContext = try TLSContext(configuration: TLSClientConfiguration(policy: policy))
        } catch {
            throw WorkerError("\(policy.sourcePath): \(error)")
        }
        self.policy = policy
        self.options = options
        var logger = logger
        logger[metadataKey: "policy"] = "\(policy.name)"
        self.logger = logger
        let group = MultiThreadedEventLoopGroup(numberOfThreads: options.threads)
        self.group = group
        self.shared = WorkerShared(
            policy: policy, tlsContext: tlsContext, logger: logger, localAddresses: LocalAddresses.current(),
            transparent: options.transparent, eventLoops: group.makeIterator().map { $0 })
        if policy.tls.isLegacy {
            logger.warning(
                "legacy TLS allowed: this policy accepts versions below TLS 1.2 and runs OpenSSL at security level 0",
                metadata: ["min_version": "\(policy.tls.minVersion.rawValue)"])
        }
    }

    /// Listens; returns the address. With `accepting` false the socket is set up but not
    /// accepted from (no read interest: a worker taking over from another one on the same
    /// socket does not race it) until `beginAccepting()`.
    @discardableResult
    public func start(accepting: Bool = true) throws -> SocketAddress {
        let shared = self.shared
        let logger = self.logger
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    // Out of descriptors: pause accepting for a moment instead of spinning.
                    try channel.pipeline.syncOperations.addHandler(AcceptPressureLogger(logger: logger))
                }
            }
            .serverChannelOption(.backlog, value: ListenSocket.backlog)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelOption(.autoRead, value: accepting)
            .childChannelInitializer { channel in
                // The accepted socket's options, set here before it is registered, directly:
                // `childChannelOption` applies each one through a chain of futures (a promise,
                // a closure and a dynamic cast per option on every accepted connection).
                channel.eventLoop.makeCompletedFuture {
                    let options = try channel.socketOptions()
                    // Nothing is read from a client until its server has been verified.
                    try options.setOption(.autoRead, value: false)
                    try options.setOption(.allowRemoteHalfClosure, value: true)
                    try options.setOption(.tcpOption(.tcp_nodelay), value: 1)
                    try options.setOption(.recvAllocator, value: WorkerShared.clientReceiveSizes)
                    RelayConnection(client: channel, shared: shared).start()
                }
            }
        let channel: Channel
        do {
            switch options.listen {
            case .address(let host, let port):
                channel = try bootstrap.bind(host: host, port: port).wait()
            case .descriptor(let fd):
                channel = try bootstrap.withBoundSocket(fd).wait()
                // NIO listened again with its default backlog (128), not the option's.
                try ListenSocket.setBacklog(of: fd)
            }
        } catch {
            throw WorkerError("cannot listen on \(options.listen): \(error)")
        }
        serverChannel.withLockedValue { $0 = channel }
        // Interfaces come and go; the "is this the gateway itself" check follows them.
        let task = group.next().scheduleRepeatedTask(initialDelay: .seconds(10), delay: .seconds(10)) { _ in
            shared.updateLocalAddresses(LocalAddresses.current())
        }
        addressRefresh.withLockedValue { $0 = task }
        guard let address = channel.localAddress else { throw WorkerError("listening socket has no address") }
        return address
    }

    /// Starts accepting on a socket `start(accepting: false)` set up.
    public func beginAccepting() {
        serverChannel.withLockedValue { $0 }?.setOption(.autoRead, value: true).whenFailure { error in
            self.logger.error("cannot start accepting", metadata: ["error": "\(error)"])
        }
    }

    /// The running totals of this worker's connections, for its `stats` reports.
    public var stats: ConnectionStats { shared.stats }

    /// Calls `report` with what changed in `stats` every `interval` (nothing when nothing
    /// changed), on an event loop, until the worker shuts down.
    public func reportStats(every interval: TimeAmount, _ report: @escaping @Sendable ([String: UInt64]) -> Void) {
        let stats = shared.stats
        let task = group.next().scheduleRepeatedTask(initialDelay: interval, delay: interval) { _ in
            let changed = stats.changes()
            if !changed.isEmpty { report(changed) }
        }
        statsTask.withLockedValue { $0 = task }
    }

    /// Gives the heap's free memory back to the kernel once connections stop coming and
    /// going (`FreeHeap.release` when an interval saw none accepted or closed, after some
    /// were): under traffic freed relay buffers stay for reuse (`FreeHeap.keepForRelaying`),
    /// at rest and with only idle connections open they do not stay resident (beyond an
    /// event loop arena's free top, kept up to the 2 MiB trim threshold).
    public func releaseHeapWhenQuiet(every interval: TimeAmount) {
        let stats = shared.stats
        let task = group.next().scheduleRepeatedTask(initialDelay: interval, delay: interval) { _ in
            if stats.quietAfterActivity() { FreeHeap.release() }
        }
        heapTask.withLockedValue { $0 = task }
    }

    /// Takes `networks` as the policy's destinations from now on (the supervisor's
    /// `destinations` line: a `[match] hosts` name's addresses changed); open connections
    /// are not touched. Logs what entered and left.
    public func updateDestinations(_ networks: [IPNetwork]) {
        let old = shared.updateDestinations(networks)
        let added = networks.filter { !old.contains($0) }.map(\.description)
        let removed = old.filter { !networks.contains($0) }.map(\.description)
        logger.info(
            "destinations updated",
            metadata: [
                "destinations": "\(networks.count)", "added": "\(added.joined(separator: ","))",
                "removed": "\(removed.joined(separator: ","))",
            ])
    }

    /// Open connections right now.
    public var activeConnections: Int { shared.limiter.current }

    /// Stops accepting, lets open connections finish for the drain timeout, then closes
    /// the rest and stops the event loops. Returns how many connections were cut.
    @discardableResult
    public func shutdown(stoppedAccepting: () -> Void = {}) -> Int {
        let server = serverChannel.withLockedValue { channel -> Channel? in
            defer { channel = nil }
            return channel
        }
        // Stop accepting first and close the socket a moment later: NIO closes a child it
        // accepted with "I/O on closed channel" if its server channel is closed before the
        // child's setup finished (ServerBootstrap's accept handler), which cut one or two
        // connections at every reload under load.
        try? server?.setOption(.autoRead, value: false).wait()
        stoppedAccepting()
        usleep(250_000)
        try? server?.close().wait()
        addressRefresh.withLockedValue { $0?.cancel() }
        let deadline = NIODeadline.now() + options.drainTimeout
        while shared.limiter.current > 0 && NIODeadline.now() < deadline {
            usleep(50_000)
        }
        let cut = shared.limiter.current
        statsTask.withLockedValue { $0?.cancel() }
        heapTask.withLockedValue { $0?.cancel() }
        if cut > 0 {
            logger.warning("drain deadline reached", metadata: ["open_connections": "\(cut)"])
        }
        try? group.syncShutdownGracefully()
        return cut
    }

    /// Blocks until the listening socket is closed.
    public func waitUntilClosed() {
        let server = serverChannel.withLockedValue { $0 }
        try? server?.closeFuture.wait()
    }
}
