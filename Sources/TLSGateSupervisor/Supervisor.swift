import Dispatch
import FoundationEssentials
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
    /// (now: they follow DNS), the assignment bytes, and the policy as validated.
    private var versions: [WorkerTable.Version: (policy: Policy, payload: Data, source: Policy)] = [:]
    var sockets: [String: ListenSocket] = [:]
    /// Metrics, status and control requests (Supervisor+Admin.swift).
    var admin = AdminState()
    var processes: [WorkerTable.WorkerID: WorkerProcess] = [:]
    private var workerIDs: [pid_t: WorkerTable.WorkerID] = [:]
    /// When each `[match] hosts` name is asked again and its last good addresses: a name
    /// that stops resolving keeps them (and stays guarded) instead of falling out of the rules.
    var hostSchedule: HostRefreshSchedule
    /// The rule entries and plan last applied, so address changes update only the sets.
    private var appliedRules: (entries: [WorkerTable.RuleEntry], plan: InterceptionPlan)?
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
        self.hostSchedule = HostRefreshSchedule(
            minimum: UInt64(config.dns.minRefresh.milliseconds), maximum: UInt64(config.dns.maxRefresh.milliseconds))
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
        releaseFreeHeap()
    }

    /// After start and every reload, once the load's temporaries are gone (the next turn of
    /// the queue): what parsing and checking the configuration allocated goes back.
    private func releaseFreeHeap() {
        queue.async { FreeHeap.release() }
    }

    /// Each policy's version (hosts resolved, files hashed), by name; `versions` learns them.
    private func versions(for policies: [Policy]) -> [String: WorkerTable.Version] {
        let names = Set(policies.flatMap(\.match.hosts))
        for name in names.sorted() { record(name, Result { () throws(SystemError) in try HostResolver.resolve(name) }) }
        hostSchedule.keep(only: names.union(sources.values.flatMap(\.match.hosts)))
        let effective = resolveHosts(policies)
        var result: [String: WorkerTable.Version] = [:]
        for policy in policies {
            let resolved = effective[policy.name] ?? policy
            let assignment = WorkerAssignment(
                policy: resolved, mode: config.intercept.mode, drainTimeout: config.workers.drainTimeout,
                threads: config.workers.threads)
            // The version leaves the hosts' addresses out: when they change the worker is
            // told (`destinations`), not replaced.
            guard let payload = Self.payload(assignment),
                let unresolved = Self.payload(WorkerAssignment(
                    policy: policy, mode: assignment.mode, drainTimeout: assignment.drainTimeout, threads: assignment.threads))
            else { continue }
            // The files are hashed as the worker's account reads them (a client key is its own).
            let version = withWorkerFileIdentity(policy.name) {
                PolicyFingerprint.of(assignment: unresolved, log: config.log, policy: resolved)
            }
            // A version already running keeps what its workers know: `followHostAddresses`
            // then brings it (workers, sets) to the addresses just resolved.
            if versions[version] == nil { versions[version] = (resolved, payload, policy) }
            result[policy.name] = version
        }
        return result
    }

    /// `body` with this thread opening files as policy `name`'s worker account (as itself
    /// with `worker_user = "same"`, or when the account cannot be found).
    private func withWorkerFileIdentity<T>(_ name: String, _ body: () -> T) -> T {
        guard let account = config.workerUser.accountName(forPolicy: name).flatMap({ try? Privileges.lookup(user: $0) })
        else { return body() }
        return Privileges.withFileIdentity(of: account) { _ in body() }
    }

    /// An assignment as the JSON line a worker reads.
    private static func payload(_ assignment: WorkerAssignment) -> Data? {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        guard var payload = try? encoder.encode(assignment) else { return nil }
        payload.append(0x0a)
        return payload
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
                let process = try spawnWorker(id: id, policy: name, socket: socket, payload: assigned.payload)
                processes[id] = process
                workerIDs[process.pid] = id
                return .spawned(id, pid: process.pid)
            } catch {
                return .spawnFailed(id, reason: "\(error)")
            }
        case .allowAccept(let id, _):
            tell(id, .accept)
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

    /// Spawns a worker on `socket` with its control channel at descriptor 4, as the
    /// account `worker_user` gives `policy` (the supervisor's own with `"same"`), hands it
    /// its assignment, and listens for its reports. An account that cannot be found is a
    /// failed spawn (the table backs off and retries), never a worker under the
    /// supervisor's account.
    private func spawnWorker(id: WorkerTable.WorkerID, policy: String, socket: ListenSocket, payload: Data) throws -> WorkerProcess {
        var account: (uid: uid_t, gid: gid_t)?
        if let name = config.workerUser.accountName(forPolicy: policy) {
            let found = try Privileges.lookup(user: name)
            account = (found.uid, found.gid)
        }
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
                descriptors: [socket.descriptor, channel.child], account: account)
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
            || newConfig.user != config.user || newConfig.workerUser != config.workerUser
        {
            logger.error("reload refused: changing intercept.mode, intercept.listen, user or worker_user needs a restart")
            reloadRefused(
                ["\(newConfig.sourcePath): changing intercept.mode, intercept.listen, user or worker_user needs a restart (the running configuration stays)"],
                reply: reply)
            return
        }
        config = newConfig
        // Names are validated unique; the sources of removed policies stay until their
        // sockets close (they are only read to log `policy listening`).
        for policy in policies { sources[policy.name] = policy }
        hostSchedule.minimum = UInt64(newConfig.dns.minRefresh.milliseconds)
        hostSchedule.maximum = max(hostSchedule.minimum, UInt64(newConfig.dns.maxRefresh.milliseconds))
        reloadAccepted(ticket: table.upcomingTicket, reply: reply)
        send(.reload(versions(for: policies), Self.settings(newConfig)))
        let live = Set(table.policies).union(table.disabled.keys)
        sources = sources.filter { live.contains($0.key) }
        // An unchanged policy whose hosts resolved differently keeps its worker.
        followHostAddresses()
        scheduleHostRefresh()
        releaseFreeHeap()
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
        let plan = rulePlan(entries)
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
        appliedRules = (entries, plan)
        logger.debug("rules applied", metadata: ["ruleset": "\(script)"])
        saveGuard(plan)
    }

    /// The plan for the table's rule entries, with each version's current addresses.
    private func rulePlan(_ entries: [WorkerTable.RuleEntry]) -> InterceptionPlan {
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
        return Self.plan(config: config, policies: live, gatewayUID: options.gatewayUID, disabled: off)
    }

    /// The uids the workers of `policies` run as under `worker_user` (none with `"same"`;
    /// an account that cannot be found is left out: its worker cannot start either).
    public static func workerUIDs(_ config: GatewayConfig, policies: [String]) -> [UInt32] {
        let names = Set(policies.compactMap { config.workerUser.accountName(forPolicy: $0) })
        return names.compactMap { try? Privileges.lookup(user: $0).uid }.sorted()
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
        // Local mode leaves the workers' own (upstream) connections alone too.
        let workers = mode == .local ? workerUIDs(config, policies: entries.map(\.name)) : []
        return InterceptionPlan(
            mode: mode, clients: clients, entries: entries, gatewayUID: gatewayUID, workerUIDs: workers,
            tproxyMark: config.intercept.tproxyMark)
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

    /// Every policy with the current addresses of its `[match] hosts` added to its networks
    /// (what the rules and the worker's destination check use), by name. An address two
    /// policies claim is decided by `HostClaims` and reported.
    private func resolveHosts(_ sources: [Policy]) -> [String: Policy] {
        let result = HostClaims.resolve(sources) { host in self.hostSchedule.addresses(of: host).compactMap(IPAddress.init) }
        for conflict in result.conflicts {
            reportedConflicts.insert(conflict.description)
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

    /// Notes what resolving `name` gave: new addresses, or a failure that keeps the last ones
    /// (logged once per change, counted in `hostRefreshStatus`).
    private func record(_ name: String, _ outcome: Result<HostResolver.Resolution, SystemError>) {
        let now = Self.now()
        switch outcome {
        case .success(let resolution) where !resolution.addresses.isEmpty:
            let (changed, recovered) = hostSchedule.resolved(name, addresses: resolution.addresses, ttl: resolution.ttl, now: now)
            if changed || recovered {
                logger.info(
                    recovered ? "dns refresh recovered" : "dns addresses",
                    metadata: [
                        "name": "\(name)", "addresses": "\(resolution.addresses.joined(separator: ","))",
                        "ttl": "\(resolution.ttl.map { "\($0)s" } ?? "-")", "source": "\(resolution.source.rawValue)",
                    ])
            }
        case .success:
            record(name, .failure(SystemError("resolve \(name): no address", errno: 0)))
        case .failure(let error):
            options.admin.metrics?.dnsRefreshFailed()
            let news = hostSchedule.failed(name, error: "\(error)", now: now)
            guard news else { return }
            let kept = hostSchedule.addresses(of: name)
            if kept.isEmpty {
                logger.warning(
                    "dns refresh failed; its traffic is not intercepted until it resolves",
                    metadata: ["name": "\(name)", "kept": "-", "error": "\(error)"])
            } else {
                logger.warning(
                    "dns refresh failed; keeping its last addresses",
                    metadata: ["name": "\(name)", "kept": "\(kept.joined(separator: ","))", "error": "\(error)"])
            }
        }
    }

    private let resolverQueue = DispatchQueue(label: "tlsgate.supervisor.dns")
    private var reportedConflicts = Set<String>()
    private var hostRefreshAt: UInt64?
    private var hostRefreshRunning = false

    /// Arms the timer for the next name due (each name's TTL, within `[dns]` bounds).
    private func scheduleHostRefresh() {
        guard !table.stopping, !hostRefreshRunning, let deadline = hostSchedule.nextDeadline else { return }
        if let at = hostRefreshAt, at <= deadline { return }
        hostRefreshAt = deadline
        let now = Self.now()
        queue.asyncAfter(deadline: .now() + .milliseconds(deadline > now ? Int(deadline - now) : 0) + .milliseconds(5)) {
            guard self.hostRefreshAt == deadline else { return }
            self.hostRefreshAt = nil
            self.refreshDueHosts()
        }
    }

    /// Resolves the names that are due off the supervisor's queue (a slow nameserver does not
    /// hold up signals and workers), then lets the rules and workers follow.
    private func refreshDueHosts() {
        guard !table.stopping else { return }
        let names = hostSchedule.due(now: Self.now())
        guard !names.isEmpty else { return scheduleHostRefresh() }
        hostRefreshRunning = true
        resolverQueue.async {
            let outcomes = names.map { name in (name, Result { () throws(SystemError) in try HostResolver.resolve(name) }) }
            self.queue.async {
                self.hostRefreshRunning = false
                guard !self.table.stopping else { return }
                for (name, outcome) in outcomes { self.record(name, outcome) }
                self.followHostAddresses()
                self.scheduleHostRefresh()
            }
        }
    }

    /// Brings each live version's addresses up to date with `hostSchedule` (through
    /// `HostClaims`), then its workers and the nftables sets: the workers first learn the
    /// old and new addresses together, the sets change in one transaction, then the workers
    /// get the new list alone. No worker is restarted, no connection touched.
    private func followHostAddresses() {
        let live = table.policies.compactMap { sources[$0] }
        guard live.contains(where: { !$0.match.hosts.isEmpty }) else { return }
        let current = HostClaims.resolve(live) { host in self.hostSchedule.addresses(of: host).compactMap(IPAddress.init) }
        // A name that moved into another policy's networks is said once, not at every refresh.
        for conflict in current.conflicts where reportedConflicts.insert(conflict.description).inserted {
            logger.warning("\(conflict)", metadata: ["policy": "\(conflict.policy)", "host": "\(conflict.host)"])
        }
        let byName = Dictionary(current.policies.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        var changed: [WorkerTable.Version: (old: [IPNetwork], new: [IPNetwork])] = [:]
        for (version, entry) in versions {
            guard let updated = byName[entry.source.name], sources[entry.source.name] == entry.source,
                updated.match.networks != entry.policy.match.networks,
                let assignment = try? JSONDecoder().decode(WorkerAssignment.self, from: entry.payload),
                let payload = Self.payload(WorkerAssignment(
                    policy: updated, mode: assignment.mode, drainTimeout: assignment.drainTimeout, threads: assignment.threads))
            else { continue }
            changed[version] = (entry.policy.match.networks, updated.match.networks)
            versions[version] = (updated, payload, entry.source)
            logger.info(
                "policy destinations changed",
                metadata: [
                    "policy": "\(entry.source.name)",
                    "added": "\(updated.match.networks.filter { !entry.policy.match.networks.contains($0) }.map(\.description).joined(separator: ","))",
                    "removed": "\(entry.policy.match.networks.filter { !updated.match.networks.contains($0) }.map(\.description).joined(separator: ","))",
                ])
        }
        guard !changed.isEmpty else { return }
        let workers = processes.keys.sorted().compactMap { id in table.workers[id].map { (id, $0.version) } }
        for (id, version) in workers {
            guard let change = changed[version] else { continue }
            tell(id, .destinations(change.old + change.new.filter { !change.old.contains($0) }))
        }
        updateRuleSets()
        for (id, version) in workers {
            guard let change = changed[version] else { continue }
            tell(id, .destinations(change.new))
        }
    }

    /// Applies the current addresses to the rules last applied: only the changed sets
    /// (`Ruleset.elementUpdate`), or the whole script when a set appears or vanishes.
    private func updateRuleSets() {
        guard let applied = appliedRules else { return }
        let plan = rulePlan(applied.entries)
        guard plan != applied.plan else { return }
        if let script = Ruleset.elementUpdate(from: applied.plan, to: plan) {
            do {
                try NFTables.apply(script)
                appliedRules = (applied.entries, plan)
                logger.info("destination sets updated")
                logger.debug("rules applied", metadata: ["ruleset": "\(script)"])
                saveGuard(plan)
                return
            } catch {
                logger.warning("cannot update the destination sets alone; updating the whole tables in place", metadata: ["error": "\(error)"])
            }
        }
        do {
            try applyRules(applied.entries)
        } catch {
            logger.error("cannot apply the new rules; the previous table stays", metadata: ["error": "\(error)"])
        }
    }

    /// Writes one control line to a worker (nothing when its channel is closed: it is exiting).
    private func tell(_ id: WorkerTable.WorkerID, _ message: SupervisorMessage) {
        guard let process = processes[id], process.source != nil else { return }
        let line = message.line
        let written = line.withUnsafeBytes { write(process.channel, $0.baseAddress, $0.count) }
        if written != line.count {
            logger.error("cannot write to a worker's control channel", metadata: ["pid": "\(process.pid)", "error": "\(SystemError("write"))"])
        }
    }

    /// What `[match] hosts` resolution looks like now, for status and metrics: every
    /// name's last good addresses, next refresh, last error, and the failure counters
    /// (`failures` is `tlsgate_dns_refresh_failures_total`). Thread-safe; never call it
    /// on the supervisor's own queue.
    public func hostRefreshStatus() -> HostRefreshSchedule {
        dispatchPrecondition(condition: .notOnQueue(queue))
        return queue.sync { hostSchedule }
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
