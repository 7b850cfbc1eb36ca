import Dispatch
import Foundation
import Logging
import TLSGateFirewall
import TLSGatePolicy
import TLSGateSystem

#if canImport(Glibc)
import Glibc
#endif

/// The long-lived parent: owns the listening sockets, the nftables table and one worker
/// per policy; restarts crashed workers, reloads on SIGHUP, cleans up on SIGTERM.
///
/// Every piece of state is touched only on `queue`; signals arrive there as dispatch sources.
public final class Supervisor: @unchecked Sendable {
    /// Loads and validates the config and policies again, for SIGHUP.
    public typealias Reloader = @Sendable () -> (GatewayConfig?, [Policy], [Diagnostic])

    public struct Options: Sendable {
        /// The binary workers are started from (this one).
        public var executable: String
        /// The uid `local` mode must not redirect (the gateway's own connections).
        public var gatewayUID: UInt32
        /// The operator's view (`[admin]`): metrics, their exposition, the control socket.
        public var admin: AdminOptions

        public init(executable: String, gatewayUID: UInt32, admin: AdminOptions = AdminOptions()) {
            self.executable = executable
            self.gatewayUID = gatewayUID
            self.admin = admin
        }
    }

    let queue = DispatchQueue(label: "tlsgate.supervisor")
    let logger: Logger
    let options: Options
    private let reloader: Reloader
    var config: GatewayConfig
    /// Every decision about workers; this class performs its actions.
    var table: WorkerTable
    /// Each policy as validated from its file, by name (host refresh resolves these again).
    var sources: [String: Policy] = [:]
    /// What each version a worker is started with is: the policy with its hosts resolved
    /// and the assignment bytes.
    private var versions: [WorkerTable.Version: (policy: Policy, payload: Data)] = [:]
    var sockets: [String: ListenSocket] = [:]
    /// Metrics, status and control requests (Supervisor+Admin.swift).
    var admin = AdminState()
    var processes: [WorkerTable.WorkerID: WorkerProcess] = [:]
    private var workerIDs: [pid_t: WorkerTable.WorkerID] = [:]
    /// The last addresses each `[match] hosts` name resolved to: a name that stops
    /// resolving keeps them (and stays guarded) instead of falling out of the rules.
    private var lastResolved: [String: [IPAddress]] = [:]
    private var exitCode: Int32 = 0
    private var signalSources: [DispatchSourceSignal] = []
    private let finished = DispatchSemaphore(value: 0)
    private var tproxyRoutingInstalled = false
    /// Whether the flows an earlier run redirected were cleared (once, before the first rules).
    private var staleFlowsCleared = false
    private var stopFinished = false
    private var tickAt: UInt64?

    public init(config: GatewayConfig, policies: [Policy], options: Options, logger: Logger, reloader: @escaping Reloader) {
        self.config = config
        self.options = options
        self.logger = logger
        self.reloader = reloader
        self.initialPolicies = policies
        self.table = WorkerTable(settings: Self.settings(config))
    }

    private let initialPolicies: [Policy]

    /// Starts everything, then blocks until the gateway stops; returns the exit status.
    public func run() -> Int32 {
        installSignalHandlers()
        queue.sync { self.startUp() }
        finished.wait()
        return exitCode
    }

    /// The table's settings from `[workers]`.
    static func settings(_ config: GatewayConfig) -> WorkerTable.Settings {
        let workers = config.workers
        return WorkerTable.Settings(
            restartDelay: UInt64(workers.restartDelay.milliseconds), restartDelayMax: UInt64(workers.restartDelayMax.milliseconds),
            crashLimit: workers.crashLimit, crashWindow: UInt64(workers.crashWindow.milliseconds),
            stopGrace: UInt64(workers.drainTimeout.milliseconds) + 5000, startTimeout: 30000)
    }

    // MARK: start

    private func startUp() {
        if NFTables.tableExists() {
            logger.warning("replacing a stale nftables table left by an earlier run", metadata: ["table": "inet tlsgate"])
        }
        if NFTables.tableExists(Ruleset.guardTableName) {
            logger.info("replacing the fail-closed guard left by an earlier run", metadata: ["table": "inet \(Ruleset.guardTableName)"])
        }
        if config.intercept.mode == .tproxy {
            do { try installTProxyRouting() } catch {
                logger.critical("cannot start", metadata: ["error": "\(error)"])
                send(.terminate(reason: "start-up failed", exitCode: 1))
                return
            }
        }
        startAdmin()
        sources = Dictionary(initialPolicies.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        send(.start(versions(for: initialPolicies)))
        scheduleHostRefresh()
    }

    /// Each policy's version (hosts resolved, files hashed), by name; `versions` learns them.
    private func versions(for policies: [Policy]) -> [String: WorkerTable.Version] {
        let effective = resolveHosts(policies)
        var result: [String: WorkerTable.Version] = [:]
        for policy in policies {
            let resolved = effective[policy.name] ?? policy
            let assignment = WorkerAssignment(
                policy: resolved, mode: config.intercept.mode, drainTimeout: config.workers.drainTimeout,
                threads: config.workers.threads)
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            guard var payload = try? encoder.encode(assignment) else { continue }
            payload.append(0x0a)
            let version = PolicyFingerprint.of(assignment: payload, log: config.log, policy: resolved)
            versions[version] = (resolved, payload)
            result[policy.name] = version
        }
        return result
    }

    // MARK: the table's inputs and actions

    private static func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds / 1_000_000 }

    /// Feeds one input to the table and performs what it decides, feeding back what the
    /// actions report (a pid, a failed spawn) until nothing is left.
    private func send(_ input: WorkerTable.Input) {
        var pending = [input]
        while !pending.isEmpty {
            let next = pending.removeFirst()
            for action in table.handle(next, now: Self.now()) {
                if let feedback = perform(action) { pending.append(feedback) }
            }
        }
        let inUse = table.versionsInUse
        versions = versions.filter { inUse.contains($0.key) }
        scheduleTick()
        updateLevels()
    }

    private func scheduleTick() {
        guard let deadline = table.nextDeadline else { return }
        if let tickAt, tickAt <= deadline { return }
        tickAt = deadline
        let now = Self.now()
        let delay = deadline > now ? Int(deadline - now) : 0
        queue.asyncAfter(deadline: .now() + .milliseconds(delay) + .milliseconds(1)) {
            self.tickAt = nil
            self.send(.tick)
        }
    }

    private func perform(_ action: WorkerTable.Action) -> WorkerTable.Input? {
        switch action {
        case .open(let name):
            guard let policy = sources[name] else { return .openFailed(name, reason: "no such policy") }
            do {
                let socket = try ListenSocket(
                    address: config.intercept.listen.description, port: 0, transparent: config.intercept.mode == .tproxy)
                sockets[name] = socket
                logger.info(
                    "policy listening",
                    metadata: [
                        "policy": "\(name)", "listen_port": "\(socket.port)", "match_port": "\(policy.match.port)",
                        "upstream_port": "\(policy.upstream.port)",
                    ])
            } catch {
                return .openFailed(name, reason: "\(error)")
            }
        case .close(let name):
            sockets[name] = nil
        case .spawn(let id, let name, let version):
            guard let socket = sockets[name], let assigned = versions[version] else {
                return .spawnFailed(id, reason: "no listening socket or policy for \(name)")
            }
            do {
                let process = try spawnWorker(id: id, socket: socket, payload: assigned.payload)
                processes[id] = process
                workerIDs[process.pid] = id
                return .spawned(id, pid: process.pid)
            } catch {
                return .spawnFailed(id, reason: "\(error)")
            }
        case .allowAccept(let id, _):
            // A channel whose source is gone is closed (EOF): the worker is exiting.
            guard let process = processes[id], process.source != nil else { break }
            let line = WorkerReport.acceptLine
            let written = line.withUnsafeBytes { write(process.channel, $0.baseAddress, $0.count) }
            if written != line.count {
                logger.error("cannot tell a worker to accept", metadata: ["pid": "\(process.pid)", "error": "\(SystemError("write"))"])
            }
        case .signal(_, let pid, let signal):
            kill(pid, signal == .kill ? SIGKILL : SIGTERM)
        case .applyRules(let entries):
            do {
                try applyRules(entries)
                rulesApplied(true)
            } catch {
                rulesApplied(false)
                return .rulesFailed(reason: "\(error)")
            }
        case .log(let line):
            let metadata = line.metadata.filter { !$0.value.isEmpty || ["added", "changed", "removed"].contains($0.key) }
                .mapValues { Logger.MetadataValue.string($0) }
            switch line.level {
            case .info: logger.info("\(line.message)", metadata: metadata)
            case .warning: logger.warning("\(line.message)", metadata: metadata)
            case .error: logger.error("\(line.message)", metadata: metadata)
            case .critical: logger.critical("\(line.message)", metadata: metadata)
            }
        case .started(let count, let ready):
            logger.info(
                "gateway started",
                metadata: [
                    "policies": "\(count)", "ready": "\(ready)", "mode": "\(config.intercept.mode.rawValue)",
                    "uid": "\(getuid())", "pid": "\(getpid())",
                ])
        case .finish(let code):
            if exitCode == 0 { exitCode = code }
            finishStop()
        case .reloadFinished(let ticket, let added, let changed, let removed, let failed):
            reloadFinished(ticket: ticket, added: added, changed: changed, removed: removed, failed: failed)
        }
        return nil
    }

    // MARK: workers

    /// Spawns a worker on `socket` with its control channel at descriptor 4, hands it its
    /// assignment, and listens for its reports.
    private func spawnWorker(id: WorkerTable.WorkerID, socket: ListenSocket, payload: Data) throws -> WorkerProcess {
        let channel = try ProcessSpawner.makeSocketPair()
        let arguments = [
            options.executable, "worker", "--listen-fd", "3", "--control-fd", "4",
            "--log-format", config.log.format.rawValue, "--log-level", config.log.level,
        ]
        // No Swift crash backtracer: it would be a fork and exec the seccomp filter forbids,
        // turning a crash (SIGILL/SIGTRAP) into a confusing SIGSYS.
        let environment = ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8", "SWIFT_BACKTRACE=enable=no"]
        let pid: pid_t
        do {
            pid = try ProcessSpawner.spawn(
                path: options.executable, arguments: arguments, environment: environment,
                descriptors: [socket.descriptor, channel.child])
        } catch {
            close(channel.parent)
            close(channel.child)
            throw error
        }
        close(channel.child)
        // A socket buffer holds far more than a policy's few kilobytes: this does not block.
        let written = payload.withUnsafeBytes { write(channel.parent, $0.baseAddress, $0.count) }
        if written != payload.count {
            logger.error("cannot hand the policy to its worker", metadata: ["pid": "\(pid)"])
        }
        _ = fcntl(channel.parent, F_SETFL, fcntl(channel.parent, F_GETFL) | O_NONBLOCK)
        let source = DispatchSource.makeReadSource(fileDescriptor: channel.parent, queue: queue)
        let fd = channel.parent
        source.setEventHandler { [weak self] in self?.readReports(id: id) }
        source.setCancelHandler { close(fd) }
        source.resume()
        return WorkerProcess(pid: pid, channel: fd, source: source)
    }

    /// Reads what a worker wrote on its control channel: allow-listed, length-checked lines.
    func readReports(id: WorkerTable.WorkerID) {
        guard var process = processes[id] else { return }
        var chunk = [UInt8](repeating: 0, count: WorkerReport.maximumLength)
        let n = chunk.withUnsafeMutableBytes { read(process.channel, $0.baseAddress, $0.count) }
        if n < 0 && (errno == EAGAIN || errno == EINTR) { return }
        if n <= 0 {
            // The worker closed its end (it is exiting): nothing more to read.
            process.source?.cancel()
            process.source = nil
            processes[id] = process
            return
        }
        process.buffer += chunk[0..<n]
        var inputs: [WorkerTable.Input] = []
        parsing: while true {
            switch WorkerReport.parse(process.buffer) {
            case .incomplete:
                break parsing
            case .invalid(let why):
                inputs.append(.misbehaved(id, reason: why))
                process.buffer = []
                process.source?.cancel()
                process.source = nil
                break parsing
            case .report(let report, let consumed):
                process.buffer.removeFirst(consumed)
                switch report {
                case .ready: inputs.append(.ready(id))
                case .failed(let reason): inputs.append(.reportedFailure(id, reason: reason))
                case .draining: inputs.append(.stoppedAccepting(id))
                case .stats(let totals):
                    if let input = statsReported(id, totals) { inputs.append(input) }
                }
            }
        }
        processes[id] = process
        for input in inputs { send(input) }
    }

    private func reap() {
        for (pid, exit) in ProcessSpawner.reapAll() {
            guard let id = workerIDs.removeValue(forKey: pid) else { continue }
            workerExiting(id)
            if let process = processes.removeValue(forKey: id) {
                process.source?.cancel()  // closes the channel (unless EOF already did)
            }
            send(.exited(id, status: "\(exit)"))
        }
    }

    // MARK: reload

    /// Loads the config again and hands it to the table; `reply` (a `tlsgate reload`) gets
    /// the outcome once the reload is over.
    func reload(reply: ReloadReply? = nil) {
        guard !table.stopping else {
            reply?(ReloadOutcome(result: "stopping", generation: admin.generation))
            return
        }
        logger.info("reloading", metadata: ["config": "\(config.sourcePath)"])
        let (newConfig, policies, diagnostics) = reloader()
        for diagnostic in diagnostics where diagnostic.severity == .warning {
            logger.warning("\(diagnostic)")
        }
        let errors = diagnostics.filter { $0.severity == .error }
        guard let newConfig, errors.isEmpty else {
            for error in errors { logger.error("\(error)") }
            logger.error("reload refused: the running configuration stays", metadata: ["errors": "\(errors.count)"])
            reloadRefused(errors.map { "\($0)" }, reply: reply)
            return
        }
        if newConfig.intercept.mode != config.intercept.mode || newConfig.intercept.listen != config.intercept.listen
            || newConfig.user != config.user
        {
            logger.error("reload refused: changing intercept.mode, intercept.listen or user needs a restart")
            reloadRefused(
                ["\(newConfig.sourcePath): changing intercept.mode, intercept.listen or user needs a restart (the running configuration stays)"],
                reply: reply)
            return
        }
        config = newConfig
        // Names are validated unique; the sources of removed policies stay until their
        // sockets close (they are only read to log `policy listening`).
        for policy in policies { sources[policy.name] = policy }
        reloadAccepted(ticket: table.upcomingTicket, reply: reply)
        send(.reload(versions(for: policies), Self.settings(newConfig)))
        let live = Set(table.policies).union(table.disabled.keys)
        sources = sources.filter { live.contains($0.key) }
    }

    // MARK: stop

    private func beginStop(reason: String) {
        send(.terminate(reason: reason, exitCode: 0))
    }

    private func finishStop() {
        guard !stopFinished else { return }
        stopFinished = true
        stopAdmin()
        let open = config.intercept.onStop == .open
        do {
            try NFTables.deleteTables(includingGuard: open)
        } catch {
            logger.error("cannot delete the nftables table", metadata: ["error": "\(error)"])
            exitCode = 1
        }
        removeTProxyRouting()
        if open {
            logger.warning(
                "gateway stopped; on_stop = \"open\": both tables removed, LAN traffic to the policies' destinations now flows without tlsgate")
        } else {
            logger.info(
                "gateway stopped; the fail-closed guard stays: LAN connections to the policies' destinations are rejected until the next start or `tlsgate rules --remove`",
                metadata: ["table": "inet \(Ruleset.guardTableName)"])
        }
        finished.signal()
    }

    // MARK: firewall

    private func applyRules(_ entries: [WorkerTable.RuleEntry]) throws {
        var live: [(Policy, UInt16)] = []
        var off: [Policy] = []
        for entry in entries {
            guard let policy = versions[entry.version]?.policy else { continue }
            if entry.intercepted, let socket = sockets[entry.policy] {
                live.append((policy, socket.port))
            } else {
                off.append(policy)
            }
        }
        let plan = Self.plan(config: config, policies: live, gatewayUID: options.gatewayUID, disabled: off)
        if !staleFlowsCleared {
            staleFlowsCleared = true
            clearStaleFlows(plan)
        }
        // In place: the tables' hooks stay registered (what `tlsgate rules` prints).
        let (script, replaced) = try NFTables.apply(plan: plan)
        if replaced {
            logger.warning(
                "the nftables tables could not be updated in place (left by another mode or version?); they were deleted and re-created",
                metadata: ["tables": "inet \(Ruleset.tableName), inet \(Ruleset.guardTableName)"])
        }
        logger.debug("rules applied", metadata: ["ruleset": "\(script)"])
        saveGuard(plan)
    }

    /// Before the first rules of this run: conntrack entries of flows an earlier run
    /// redirected to its (now dead) listen ports would refuse clients reusing their source
    /// port for up to their timeout (`Conntrack`).
    private func clearStaleFlows(_ plan: InterceptionPlan) {
        let (deleted, problems) = Conntrack.forgetRedirectedFlows(for: plan)
        if deleted > 0 {
            logger.info("cleared connection-tracking entries of flows redirected by an earlier run", metadata: ["flows": "\(deleted)"])
        }
        for problem in problems {
            logger.warning("cannot clear the flows redirected by an earlier run", metadata: ["error": "\(problem)"])
        }
    }

    /// Saves the guard just applied, so a reboot or a start that fails puts it back
    /// (`tlsgate rules --restore-guard`). A failure is logged, not fatal: the guard is in
    /// the kernel now.
    private func saveGuard(_ plan: InterceptionPlan) {
        guard let path = config.intercept.guardFile else { return }
        do {
            try GuardFile.save(plan, to: path)
        } catch {
            logger.warning(
                "cannot save the fail-closed guard; after a reboot it is back only once the gateway runs again",
                metadata: ["guard_file": "\(path)", "error": "\(error)"])
        }
    }

    /// The interception plan for a config and policies with their listen ports; `disabled`
    /// policies are only guarded (their traffic rejected), not intercepted.
    public static func plan(
        config: GatewayConfig, policies: [(Policy, UInt16)], gatewayUID: UInt32, disabled: [Policy] = []
    ) -> InterceptionPlan {
        let clients = InterceptionPlan.Clients(
            ipv4: config.intercept.from.filter(\.isIPv4).map(\.familyDescription),
            ipv6: config.intercept.from.filter { !$0.isIPv4 }.map(\.familyDescription),
            interfaces: config.intercept.interfaces)
        let all = policies.map { ($0.0, $0.1, true) } + disabled.map { ($0, UInt16(0), false) }
        let entries = all.sorted { $0.0.name < $1.0.name }.map { policy, port, intercepted in
            InterceptionPlan.Entry(
                name: policy.name,
                ipv4: policy.match.networks.filter(\.isIPv4).map(\.familyDescription),
                ipv6: policy.match.networks.filter { !$0.isIPv4 }.map(\.familyDescription),
                matchPort: policy.match.port, upstreamPort: policy.upstream.port, listenPort: port,
                denyDirect: policy.firewall.denyDirect, intercepted: intercepted)
        }
        let mode: InterceptionPlan.Mode
        switch config.intercept.mode {
        case .redirect: mode = .redirect
        case .tproxy: mode = .tproxy
        case .local: mode = .local
        }
        return InterceptionPlan(
            mode: mode, clients: clients, entries: entries, gatewayUID: gatewayUID, tproxyMark: config.intercept.tproxyMark)
    }

    private func installTProxyRouting() throws {
        removeTProxyRouting(quiet: true)
        for arguments in Ruleset.tproxyRouting(mark: config.intercept.tproxyMark, table: config.intercept.tproxyTable) {
            try IPRoute.run(arguments)
        }
        tproxyRoutingInstalled = true
    }

    private func removeTProxyRouting(quiet: Bool = false) {
        guard quiet || tproxyRoutingInstalled else { return }
        for arguments in Ruleset.tproxyRoutingRemoval(mark: config.intercept.tproxyMark, table: config.intercept.tproxyTable) {
            try? IPRoute.run(arguments)
        }
        tproxyRoutingInstalled = false
    }

    // MARK: host names

    /// How often `[match] hosts` are resolved again.
    static let hostRefreshInterval = DispatchTimeInterval.seconds(300)

    /// Every policy with the current addresses of its `[match] hosts` added to its networks
    /// (what the rules and the worker's destination check use), by name. An address two
    /// policies claim is decided by `HostClaims` and reported.
    private func resolveHosts(_ sources: [Policy]) -> [String: Policy] {
        let result = HostClaims.resolve(sources) { host in self.lookup(host) }
        for conflict in result.conflicts {
            logger.warning("\(conflict)", metadata: ["policy": "\(conflict.policy)", "host": "\(conflict.host)"])
        }
        var byName: [String: Policy] = [:]
        for policy in result.policies {
            if policy.match.networks.isEmpty {
                logger.error("policy has no destination address yet", metadata: ["policy": "\(policy.name)"])
            }
            byName[policy.name] = policy
        }
        return byName
    }

    /// A host's addresses now; its last known ones when it stops resolving.
    private func lookup(_ host: String) -> [IPAddress] {
        do {
            let addresses = try HostResolver.addresses(of: host).compactMap(IPAddress.init)
            if !addresses.isEmpty {
                lastResolved[host] = addresses
                return addresses
            }
        } catch {
            options.admin.metrics?.dnsRefreshFailed()
            if let last = lastResolved[host] {
                logger.warning(
                    "cannot resolve a policy host; keeping its last addresses",
                    metadata: ["host": "\(host)", "addresses": "\(last.map(\.description).joined(separator: ","))", "error": "\(error)"])
                return last
            }
            logger.warning(
                "cannot resolve a policy host; its traffic is not intercepted until it resolves",
                metadata: ["host": "\(host)", "error": "\(error)"])
        }
        return lastResolved[host] ?? []
    }

    private func scheduleHostRefresh() {
        queue.asyncAfter(deadline: .now() + Self.hostRefreshInterval) {
            guard !self.table.stopping else { return }
            self.refreshHosts()
            self.scheduleHostRefresh()
        }
    }

    /// Resolves every policy's hosts again; a policy whose addresses changed gets a new
    /// worker (the old one drains once it is ready) and the rules follow.
    private func refreshHosts() {
        let withHosts = table.policies.compactMap { sources[$0] }.filter { !$0.match.hosts.isEmpty }
        guard !withHosts.isEmpty else { return }
        send(.hostsChanged(versions(for: withHosts)))
    }

    // MARK: signals

    private func installSignalHandlers() {
        let handlers: [(Int32, () -> Void)] = [
            (SIGCHLD, { self.reap() }),
            (SIGHUP, { self.reload() }),
            (SIGTERM, { self.beginStop(reason: "SIGTERM") }),
            (SIGINT, { self.beginStop(reason: "SIGINT") }),
        ]
        signal(SIGPIPE, SIG_IGN)
        for (number, handler) in handlers {
            signal(number, SIG_IGN)
            if number == SIGCHLD { signal(SIGCHLD, SIG_DFL) }  // SIG_IGN would auto-reap
            let source = DispatchSource.makeSignalSource(signal: number, queue: queue)
            source.setEventHandler(handler: handler)
            source.resume()
            signalSources.append(source)
        }
    }
}

/// A worker process: its pid and the supervisor's end of its control channel.
struct WorkerProcess {
    let pid: pid_t
    let channel: Int32
    /// Reads the worker's reports; cancelling it closes `channel`.
    var source: DispatchSourceRead?
    var buffer: [UInt8] = []
}
