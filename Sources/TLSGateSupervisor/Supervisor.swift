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

        public init(executable: String, gatewayUID: UInt32) {
            self.executable = executable
            self.gatewayUID = gatewayUID
        }
    }

    private let queue = DispatchQueue(label: "tlsgate.supervisor")
    private let logger: Logger
    private let options: Options
    private let reloader: Reloader
    private var config: GatewayConfig
    private var slots: [String: PolicySlot] = [:]
    /// Policies disabled after a crash loop (until the next reload): not intercepted, but
    /// still in the fail-closed guard.
    private var disabled: [String: Policy] = [:]
    /// The last addresses each `[match] hosts` name resolved to: a name that stops
    /// resolving keeps them (and stays guarded) instead of falling out of the rules.
    private var lastResolved: [String: [IPAddress]] = [:]
    private var workers: [pid_t: WorkerRecord] = [:]
    private var stopping = false
    private var exitCode: Int32 = 0
    private var signalSources: [DispatchSourceSignal] = []
    private let finished = DispatchSemaphore(value: 0)
    private var tproxyRoutingInstalled = false
    private var stopFinished = false

    public init(config: GatewayConfig, policies: [Policy], options: Options, logger: Logger, reloader: @escaping Reloader) {
        self.config = config
        self.options = options
        self.logger = logger
        self.reloader = reloader
        self.initialPolicies = policies
    }

    private let initialPolicies: [Policy]

    /// Starts everything, then blocks until the gateway stops; returns the exit status.
    public func run() -> Int32 {
        installSignalHandlers()
        queue.sync { self.startUp() }
        finished.wait()
        return exitCode
    }

    // MARK: start

    private func startUp() {
        if NFTables.tableExists() {
            logger.warning("replacing a stale nftables table left by an earlier run", metadata: ["table": "inet tlsgate"])
        }
        if NFTables.tableExists(Ruleset.guardTableName) {
            logger.info("replacing the fail-closed guard left by an earlier run", metadata: ["table": "inet \(Ruleset.guardTableName)"])
        }
        do {
            let effective = resolveHosts(initialPolicies)
            for policy in initialPolicies {
                try addSlot(policy, effective: effective[policy.name] ?? policy)
            }
            if config.intercept.mode == .tproxy { try installTProxyRouting() }
            try applyRules()
            scheduleHostRefresh()
        } catch {
            logger.critical("cannot start", metadata: ["error": "\(error)"])
            exitCode = 1
            beginStop(reason: "start-up failed")
            return
        }
        logger.info(
            "gateway started",
            metadata: [
                "policies": "\(slots.count)", "mode": "\(config.intercept.mode.rawValue)",
                "uid": "\(getuid())", "pid": "\(getpid())",
            ])
    }

    private func addSlot(_ policy: Policy, effective: Policy) throws {
        let socket = try ListenSocket(
            address: config.intercept.listen.description, port: 0, transparent: config.intercept.mode == .tproxy)
        var slot = PolicySlot(source: policy, policy: effective, socket: socket)
        logger.info(
            "policy listening",
            metadata: [
                "policy": "\(policy.name)", "listen_port": "\(socket.port)", "match_port": "\(policy.match.port)",
                "upstream_port": "\(policy.upstream.port)",
            ])
        slot.current = try spawnWorker(for: slot)
        slots[policy.name] = slot
    }

    // MARK: workers

    private func spawnWorker(for slot: PolicySlot) throws -> pid_t {
        let assignment = WorkerAssignment(
            policy: slot.policy, mode: config.intercept.mode, drainTimeout: config.workers.drainTimeout,
            threads: config.workers.threads)
        var payload = try JSONEncoder().encode(assignment)
        payload.append(0x0a)
        let control = try ProcessSpawner.makePipe()
        let arguments = [
            options.executable, "worker", "--listen-fd", "3", "--control-fd", "4",
            "--log-format", config.log.format.rawValue, "--log-level", config.log.level,
        ]
        let environment = ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"]
        let pid: pid_t
        do {
            pid = try ProcessSpawner.spawn(
                path: options.executable, arguments: arguments, environment: environment,
                descriptors: [slot.socket.descriptor, control.read])
        } catch {
            close(control.read)
            close(control.write)
            throw error
        }
        close(control.read)
        // A pipe holds 64 KiB; a policy is a few hundred bytes, so this does not block.
        let written = payload.withUnsafeBytes { write(control.write, $0.baseAddress, $0.count) }
        if written != payload.count {
            logger.error("cannot hand the policy to its worker", metadata: ["policy": "\(slot.policy.name)", "pid": "\(pid)"])
        }
        workers[pid] = WorkerRecord(pid: pid, policyName: slot.policy.name, state: .current, control: control.write)
        logger.info("worker started", metadata: ["policy": "\(slot.policy.name)", "pid": "\(pid)"])
        return pid
    }

    private func reap() {
        for (pid, exit) in ProcessSpawner.reapAll() {
            guard let record = workers.removeValue(forKey: pid) else { continue }
            close(record.control)
            switch record.state {
            case .leaving:
                logger.info(
                    "old worker finished draining",
                    metadata: ["policy": "\(record.policyName)", "pid": "\(pid)", "status": "\(exit)"])
            case .current:
                if stopping {
                    logger.info("worker stopped", metadata: ["policy": "\(record.policyName)", "pid": "\(pid)", "status": "\(exit)"])
                } else {
                    workerCrashed(record, exit)
                }
            }
        }
        if stopping && workers.isEmpty { finishStop() }
    }

    private func workerCrashed(_ record: WorkerRecord, _ exit: ProcessSpawner.Exit) {
        guard var slot = slots[record.policyName], slot.current == record.pid else { return }
        slot.current = nil
        let now = DispatchTime.now()
        let window = UInt64(config.workers.crashWindow.milliseconds) * 1_000_000
        slot.crashes = slot.crashes.filter { now.uptimeNanoseconds - $0.uptimeNanoseconds < window } + [now]
        let count = slot.crashes.count
        if count > config.workers.crashLimit {
            logger.critical(
                "worker keeps crashing; policy disabled until the next reload (its traffic is rejected)",
                metadata: [
                    "policy": "\(record.policyName)", "pid": "\(record.pid)", "status": "\(exit)",
                    "crashes": "\(count)", "window": "\(config.workers.crashWindow)",
                ])
            slots[record.policyName] = nil
            // Not intercepted any more, but still guarded: its traffic gets a reset, never clear text.
            disabled[record.policyName] = slot.policy
            do { try applyRules() } catch {
                logger.error("cannot remove the disabled policy's rules", metadata: ["error": "\(error)"])
            }
            return
        }
        let base = config.workers.restartDelay.milliseconds
        let delay = min(config.workers.restartDelayMax.milliseconds, base == 0 && count == 1 ? 0 : max(base, 100) << min(count - 1, 16))
        logger.error(
            "worker exited unexpectedly; restarting",
            metadata: [
                "policy": "\(record.policyName)", "pid": "\(record.pid)", "status": "\(exit)",
                "restart_in_ms": "\(delay)", "crashes": "\(count)",
            ])
        slots[record.policyName] = slot
        queue.asyncAfter(deadline: .now() + .milliseconds(Int(delay))) { self.restart(record.policyName) }
    }

    private func restart(_ name: String) {
        guard !stopping, var slot = slots[name], slot.current == nil else { return }
        do {
            slot.current = try spawnWorker(for: slot)
            slots[name] = slot
        } catch {
            logger.error("cannot restart worker", metadata: ["policy": "\(name)", "error": "\(error)"])
            queue.asyncAfter(deadline: .now() + .seconds(1)) { self.restart(name) }
        }
    }

    private func retire(_ pid: pid_t) {
        guard var record = workers[pid] else { return }
        record.state = .leaving
        workers[pid] = record
        kill(pid, SIGTERM)
    }

    // MARK: reload

    private func reload() {
        guard !stopping else { return }
        logger.info("reloading", metadata: ["config": "\(config.sourcePath)"])
        let (newConfig, policies, diagnostics) = reloader()
        for diagnostic in diagnostics where diagnostic.severity == .warning {
            logger.warning("\(diagnostic)")
        }
        let errors = diagnostics.filter { $0.severity == .error }
        guard let newConfig, errors.isEmpty else {
            for error in errors { logger.error("\(error)") }
            logger.error("reload refused: the running configuration stays", metadata: ["errors": "\(errors.count)"])
            return
        }
        if newConfig.intercept.mode != config.intercept.mode || newConfig.intercept.listen != config.intercept.listen
            || newConfig.user != config.user
        {
            logger.error("reload refused: changing intercept.mode, intercept.listen or user needs a restart")
            return
        }
        let oldConfig = config
        config = newConfig
        var added: [String] = []
        var changed: [String] = []
        var retired: [pid_t] = []
        let resolvedPolicies = resolveHosts(policies)
        do {
            for policy in policies {
                if var slot = slots[policy.name] {
                    let effective = resolvedPolicies[policy.name] ?? policy
                    // A policy with CRLs always gets a fresh worker: the files may have new contents.
                    guard slot.policy != effective || !effective.tls.crlFiles.isEmpty
                        || oldConfig.workers != newConfig.workers || oldConfig.log != newConfig.log
                    else { continue }
                    slot.source = policy
                    slot.policy = effective
                    slot.crashes = []
                    let old = slot.current
                    slot.current = try spawnWorker(for: slot)
                    slots[policy.name] = slot
                    if let old { retired.append(old) }
                    changed.append(policy.name)
                } else {
                    try addSlot(policy, effective: resolvedPolicies[policy.name] ?? policy)
                    disabled[policy.name] = nil
                    added.append(policy.name)
                }
            }
        } catch {
            logger.error("reload incomplete", metadata: ["error": "\(error)"])
        }
        let keep = Set(policies.map(\.name))
        disabled = disabled.filter { keep.contains($0.key) }
        let removed = slots.keys.filter { !keep.contains($0) }
        for name in removed {
            if let pid = slots[name]?.current { retired.append(pid) }
            slots[name] = nil
        }
        do {
            try applyRules()
        } catch {
            logger.error("cannot apply the new rules; the previous table stays", metadata: ["error": "\(error)"])
        }
        // The new workers and rules are in place: the old workers stop accepting and drain.
        for pid in retired { retire(pid) }
        logger.info(
            "reloaded",
            metadata: [
                "added": "\(added.sorted().joined(separator: ","))", "changed": "\(changed.sorted().joined(separator: ","))",
                "removed": "\(removed.sorted().joined(separator: ","))", "policies": "\(slots.count)",
            ])
    }

    // MARK: stop

    private func beginStop(reason: String) {
        guard !stopping else { return }
        stopping = true
        logger.info("stopping", metadata: ["reason": "\(reason)", "workers": "\(workers.count)"])
        for pid in workers.keys { kill(pid, SIGTERM) }
        // Close our copies of the listening sockets: with the workers' closed too, new
        // redirected connections are refused (fail closed) while the old ones drain.
        slots.removeAll()
        let grace = Int(config.workers.drainTimeout.milliseconds) + 5000
        queue.asyncAfter(deadline: .now() + .milliseconds(grace)) {
            guard !self.workers.isEmpty else { return }
            for pid in self.workers.keys {
                self.logger.warning("worker did not stop in time; killing it", metadata: ["pid": "\(pid)"])
                kill(pid, SIGKILL)
            }
        }
        if workers.isEmpty { finishStop() }
    }

    private func finishStop() {
        guard !stopFinished else { return }
        stopFinished = true
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

    private func applyRules() throws {
        let plan = interceptionPlan()
        let script = Ruleset.script(for: plan)  // what `tlsgate rules` prints
        try NFTables.apply(script)
        logger.debug("rules applied", metadata: ["ruleset": "\(script)"])
        saveGuard(plan)
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

    /// The plan for what runs now.
    func interceptionPlan() -> InterceptionPlan {
        Self.plan(
            config: config, policies: slots.values.map { ($0.policy, $0.socket.port) }, gatewayUID: options.gatewayUID,
            disabled: Array(disabled.values))
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
        for arguments in Ruleset.tproxyRouting(mark: config.intercept.tproxyMark, table: config.intercept.tproxyTable) {
            var delete = arguments
            if let add = delete.firstIndex(of: "add") { delete[add] = "del" }
            try? IPRoute.run(delete)
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
            guard !self.stopping else { return }
            self.refreshHosts()
            self.scheduleHostRefresh()
        }
    }

    /// Resolves every policy's hosts again; a policy whose addresses changed gets a new
    /// worker (the old one drains) and the rules follow.
    private func refreshHosts() {
        var retired: [pid_t] = []
        let resolvedPolicies = resolveHosts(slots.values.map(\.source))
        for name in slots.keys.sorted() {
            guard var slot = slots[name], !slot.source.match.hosts.isEmpty,
                let effective = resolvedPolicies[name]
            else { continue }
            guard effective != slot.policy else { continue }
            slot.policy = effective
            let old = slot.current
            do {
                slot.current = try spawnWorker(for: slot)
            } catch {
                logger.error("cannot start a worker with the new addresses", metadata: ["policy": "\(name)", "error": "\(error)"])
                continue
            }
            slots[name] = slot
            if let old { retired.append(old) }
            logger.info("policy host addresses changed", metadata: ["policy": "\(name)"])
        }
        guard !retired.isEmpty else { return }
        do { try applyRules() } catch {
            logger.error("cannot apply the new rules; the previous table stays", metadata: ["error": "\(error)"])
        }
        for pid in retired { retire(pid) }
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

/// One policy's socket and current worker.
struct PolicySlot {
    /// The policy as validated from its file.
    var source: Policy
    /// `source` with its hosts resolved: what the worker and the rules get.
    var policy: Policy
    let socket: ListenSocket
    var current: pid_t?
    var crashes: [DispatchTime] = []

    init(source: Policy, policy: Policy, socket: ListenSocket) {
        self.source = source
        self.policy = policy
        self.socket = socket
    }
}

/// A worker process the supervisor started.
struct WorkerRecord {
    enum State {
        /// Serves its policy now; restarted if it dies.
        case current
        /// Replaced or stopped: drains, then exits; not restarted.
        case leaving
    }
    let pid: pid_t
    let policyName: String
    var state: State
    /// Our end of the control pipe; the worker exits when it closes.
    let control: Int32
}
