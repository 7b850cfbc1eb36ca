/// Every decision the supervisor makes about its workers, as a value: the child table of
/// HAProxy's master-worker mode. Inputs (a worker spawned, ready, exited; SIGHUP with a new
/// validated config; SIGTERM; a timer tick) go in with the time; actions (open or close a
/// policy's socket, spawn, signal, apply the rules, log, finish) come out. `Supervisor`
/// only performs them, so all of this is tested with a mock clock and no process.
///
/// A policy is a *slot*: its socket, its *version* (an opaque fingerprint of everything its
/// worker gets: the policy, the files it names, the worker settings), the worker serving it
/// (`current`, ready) and the one about to (`next`, starting). A worker's life:
///
///     starting ──ready──▶ current ──replaced, removed, stopping──▶ leaving ──exit──▶ gone
///        │                   └──exit──▶ crashed: restarted with back-off, or the policy disabled
///        └──exit before ready──▶ failed at start: a reload keeps the old worker serving
///
/// On reload the old worker keeps serving until its replacement is ready, so a policy
/// never lacks a ready worker because of a reload.
public struct WorkerTable: Sendable {
    /// Milliseconds on a monotonic clock.
    public typealias Time = UInt64
    /// The table's name for a worker, given before it has a pid.
    public typealias WorkerID = Int
    /// What a policy's worker is started with, as a fingerprint: equal means unchanged.
    public typealias Version = String

    public struct Settings: Sendable, Equatable {
        public var restartDelay: Time
        public var restartDelayMax: Time
        public var crashLimit: Int
        public var crashWindow: Time
        /// How long stopping workers get before SIGKILL (the drain timeout and a margin).
        public var stopGrace: Time
        /// How long a new worker may take to report ready before it is killed as failed.
        public var startTimeout: Time
        /// How long a ready worker waits for its predecessor to stop accepting before it
        /// is let accept anyway.
        public var handoverTimeout: Time = 2000

        public init(
            restartDelay: Time = 0, restartDelayMax: Time = 5000, crashLimit: Int = 5, crashWindow: Time = 60000,
            stopGrace: Time = 35000, startTimeout: Time = 30000
        ) {
            self.restartDelay = restartDelay
            self.restartDelayMax = restartDelayMax
            self.crashLimit = crashLimit
            self.crashWindow = crashWindow
            self.stopGrace = stopGrace
            self.startTimeout = startTimeout
        }
    }

    public enum WorkerState: Sendable, Equatable {
        /// Spawned, not ready yet: not serving (a slot's `next`).
        case starting
        /// Ready and serving its slot; restarted if it dies.
        case current
        /// Replaced, removed or stopping: drains, then exits; never restarted.
        case leaving
    }

    public struct Worker: Sendable, Equatable {
        public let id: WorkerID
        public let policy: String
        public let version: Version
        public internal(set) var pid: Int32?
        public internal(set) var state: WorkerState
        public internal(set) var wasReady = false
        /// Let accept from its socket (`allowAccept` sent).
        public internal(set) var accepting = false
        /// Said it stopped accepting (after SIGTERM).
        public internal(set) var stoppedAccepting = false
        let spawnedAt: Time
        var readyAt: Time?
        /// What the worker reported before failing, or why the table killed it.
        var failure: String?
        var killed = false
    }

    struct Slot: Sendable, Equatable {
        /// The version `current` serves, or (without one) the version being started.
        var version: Version
        var current: WorkerID?
        var next: WorkerID?
        var crashes: [Time] = []
        var restartAt: Time?
    }

    /// One SIGHUP, until each policy it added or changed has a ready worker or failed.
    struct Ticket: Sendable, Equatable {
        var added: [String]
        var changed: [String]
        var removed: [String]
        var waiting: Set<String>
        var failed: [String] = []
    }

    public enum Input: Sendable, Equatable {
        /// Start: every policy by name with its version.
        case start([String: Version])
        case spawned(WorkerID, pid: Int32)
        case spawnFailed(WorkerID, reason: String)
        /// The policy's socket could not be opened (an added policy).
        case openFailed(String, reason: String)
        case ready(WorkerID)
        /// The worker said why it cannot start.
        case reportedFailure(WorkerID, reason: String)
        /// A retired worker said it has stopped accepting.
        case stoppedAccepting(WorkerID)
        /// The worker broke the control protocol.
        case misbehaved(WorkerID, reason: String)
        case exited(WorkerID, status: String)
        /// SIGHUP with a new validated config: every policy by name with its version.
        case reload([String: Version], Settings)
        case rulesFailed(reason: String)
        case terminate(reason: String, exitCode: Int32)
        case tick
    }

    public enum Signal: Sendable, Equatable { case terminate, kill }

    public struct RuleEntry: Sendable, Equatable {
        public let policy: String
        public let version: Version
        /// False: the policy is disabled, only guarded (its traffic rejected).
        public let intercepted: Bool
    }

    public struct LogLine: Sendable, Equatable {
        public enum Level: Sendable, Equatable { case info, warning, error, critical }
        public let level: Level
        public let message: String
        public let metadata: [String: String]
    }

    public enum Action: Sendable, Equatable {
        /// Bind and listen for this policy (logs `policy listening`).
        case open(policy: String)
        /// Close our copy of this policy's socket.
        case close(policy: String)
        case spawn(WorkerID, policy: String, version: Version)
        /// Let a ready worker accept: its predecessor on the socket has stopped (or is gone).
        case allowAccept(WorkerID, pid: Int32)
        case signal(WorkerID, pid: Int32, Signal)
        /// Replace the nftables tables with these entries (sorted by policy).
        case applyRules([RuleEntry])
        case log(LogLine)
        /// Every initial policy has a ready worker (or has failed): log `gateway started`.
        case started(policies: Int, ready: Int)
        /// Every worker is gone after a stop: remove the tables as configured and exit.
        case finish(exitCode: Int32)
        /// The reload with this ticket (`upcomingTicket` when it was handed over) is over:
        /// every added and changed policy has a ready worker, or is in `failed`.
        case reloadFinished(ticket: Int, added: [String], changed: [String], removed: [String], failed: [String])
    }

    public private(set) var settings: Settings
    public private(set) var workers: [WorkerID: Worker] = [:]
    private(set) var slots: [String: Slot] = [:]
    /// Disabled after a crash loop, until the next reload: not intercepted, still guarded.
    public private(set) var disabled: [String: Version] = [:]
    public private(set) var stopping = false
    private var exitCode: Int32 = 0
    private var stopDeadline: Time?
    private var finished = false
    private var nextID: WorkerID = 1
    private var tickets: [Int: Ticket] = [:]
    private var nextTicket = 1
    /// Initial policies not yet ready; `started` is announced when it empties.
    private var awaitingStart: Set<String>?
    private var announced = false
    private var appliedRules: [RuleEntry]?
    private var toClose: [String] = []
    private var now: Time = 0
    private var out: [Action] = []

    public init(settings: Settings) {
        self.settings = settings
    }

    // MARK: queries

    /// The policies with a socket, by name.
    public var policies: [String] { slots.keys.sorted() }
    /// Every version still needed (by a slot, a worker or a disabled policy).
    public var versionsInUse: Set<Version> {
        Set(slots.values.map(\.version)).union(workers.values.map(\.version)).union(disabled.values)
    }
    public func current(_ policy: String) -> Worker? { slots[policy]?.current.flatMap { workers[$0] } }
    public func next(_ policy: String) -> Worker? { slots[policy]?.next.flatMap { workers[$0] } }
    public func worker(pid: Int32) -> Worker? { workers.values.first { $0.pid == pid } }
    /// The ticket the next `reload` input gets (its `reloadFinished` action carries it).
    public var upcomingTicket: Int { nextTicket }
    /// When `tick` has something to do next.
    public var nextDeadline: Time? {
        var times = slots.values.compactMap(\.restartAt)
        if let stopDeadline { times.append(stopDeadline) }
        times += workers.values.filter { $0.state == .starting && !$0.killed }.map { $0.spawnedAt + settings.startTimeout }
        if !stopping {
            times += workers.values.filter { $0.state == .current && !$0.accepting }
                .compactMap { $0.readyAt.map { $0 + settings.handoverTimeout } }
        }
        return times.min()
    }

    // MARK: input

    public mutating func handle(_ input: Input, now: Time) -> [Action] {
        self.now = max(self.now, now)
        out = []
        if finished { return [] }
        switch input {
        case .start(let versions): start(versions)
        case .spawned(let id, let pid): spawned(id, pid)
        case .spawnFailed(let id, let reason): spawnFailed(id, reason)
        case .openFailed(let name, let reason): openFailed(name, reason)
        case .ready(let id): ready(id)
        case .reportedFailure(let id, let reason): workers[id]?.failure = reason
        case .stoppedAccepting(let id): workers[id]?.stoppedAccepting = true
        case .misbehaved(let id, let reason): misbehaved(id, reason)
        case .exited(let id, let status): exited(id, status)
        case .reload(let versions, let settings): reload(versions, settings)
        case .rulesFailed(let reason): rulesFailed(reason)
        case .terminate(let reason, let code): terminate(reason, code)
        case .tick: tick()
        }
        finishBatch()
        return out
    }

    // MARK: start, spawn, ready

    private mutating func start(_ versions: [String: Version]) {
        guard slots.isEmpty, awaitingStart == nil, !stopping else { return }
        awaitingStart = Set(versions.keys)
        for (name, version) in versions.sorted(by: { $0.key < $1.key }) {
            slots[name] = Slot(version: version)
            out.append(.open(policy: name))
            spawnNext(name)
        }
    }

    private mutating func spawnNext(_ name: String) {
        guard var slot = slots[name] else { return }
        let id = nextID
        nextID += 1
        workers[id] = Worker(id: id, policy: name, version: slot.version, pid: nil, state: .starting, spawnedAt: now)
        slot.next = id
        slot.restartAt = nil
        slots[name] = slot
        out.append(.spawn(id, policy: name, version: slot.version))
    }

    /// Starts a newer version next to the serving worker (or instead of a starting one).
    private mutating func spawnReplacement(_ name: String, version: Version) {
        guard var slot = slots[name] else { return }
        if let old = slot.next { retire(old) }
        slot.next = nil
        if slot.current == nil { slot.version = version }
        slot.crashes = []
        slot.restartAt = nil
        slots[name] = slot
        let id = nextID
        nextID += 1
        workers[id] = Worker(id: id, policy: name, version: version, pid: nil, state: .starting, spawnedAt: now)
        slots[name]?.next = id
        out.append(.spawn(id, policy: name, version: version))
    }

    private mutating func spawned(_ id: WorkerID, _ pid: Int32) {
        guard workers[id] != nil else { return }
        workers[id]!.pid = pid
        let worker = workers[id]!
        log(.info, "worker started", ["policy": worker.policy, "pid": "\(pid)"])
        // Replaced or stopped while it was being spawned.
        if worker.state == .leaving { out.append(.signal(id, pid: pid, .terminate)) }
    }

    private mutating func spawnFailed(_ id: WorkerID, _ reason: String) {
        guard let worker = workers.removeValue(forKey: id) else { return }
        guard var slot = slots[worker.policy], slot.next == id else { return }
        slot.next = nil
        if slot.current != nil {
            slots[worker.policy] = slot
            reloadFailed(worker, reason: "cannot spawn: \(reason)")
            return
        }
        slot.restartAt = now + 1000
        slots[worker.policy] = slot
        log(.error, "cannot restart worker", ["policy": worker.policy, "error": reason, "retry_in_ms": "1000"])
    }

    private mutating func openFailed(_ name: String, _ reason: String) {
        guard let slot = slots.removeValue(forKey: name) else { return }
        for id in [slot.current, slot.next].compactMap({ $0 }) { workers[id] = nil }
        awaitingStart?.remove(name)
        log(.error, "cannot listen for a policy; it is not served", ["policy": name, "error": reason])
        if awaitingStart != nil && !announced {
            terminate("start-up failed", 1, critical: "cannot start", error: reason)
            return
        }
        for key in tickets.keys where tickets[key]!.waiting.contains(name) {
            tickets[key]!.waiting.remove(name)
            tickets[key]!.failed.append(name)
        }
    }

    private mutating func ready(_ id: WorkerID) {
        guard var worker = workers[id], worker.state == .starting, !stopping,
            var slot = slots[worker.policy], slot.next == id
        else { return }
        let old = slot.current
        worker.state = .current
        worker.wasReady = true
        worker.readyAt = now
        workers[id] = worker
        slot.current = id
        slot.next = nil
        slot.version = worker.version
        slots[worker.policy] = slot
        if let old { retire(old) }
        log(.info, "worker ready", ["policy": worker.policy, "pid": worker.pid.map { "\($0)" } ?? "?"])
        awaitingStart?.remove(worker.policy)
        for key in tickets.keys { tickets[key]!.waiting.remove(worker.policy) }
    }

    private mutating func misbehaved(_ id: WorkerID, _ reason: String) {
        guard var worker = workers[id], !worker.killed else { return }
        worker.failure = "broke the control protocol: \(reason)"
        worker.killed = true
        workers[id] = worker
        log(.error, "worker sent an invalid control message; killing it", ["policy": worker.policy, "pid": pidText(worker), "error": reason])
        if let pid = worker.pid { out.append(.signal(id, pid: pid, .kill)) }
    }

    private mutating func retire(_ id: WorkerID) {
        guard var worker = workers[id], worker.state != .leaving else { return }
        worker.state = .leaving
        workers[id] = worker
        if let pid = worker.pid { out.append(.signal(id, pid: pid, .terminate)) }
    }

    // MARK: exits

    private mutating func exited(_ id: WorkerID, _ status: String) {
        guard let worker = workers.removeValue(forKey: id) else { return }
        let meta = ["policy": worker.policy, "pid": pidText(worker), "status": status]
        if stopping {
            log(.info, "worker stopped", meta)
            return
        }
        switch worker.state {
        case .leaving:
            if worker.wasReady {
                log(.info, "old worker finished draining", meta)
            } else {
                log(.info, "superseded worker exited before it was ready", meta)
            }
        case .starting:
            guard var slot = slots[worker.policy], slot.next == id else { return }
            slot.next = nil
            slots[worker.policy] = slot
            if slot.current != nil {
                reloadFailed(worker, reason: worker.failure ?? status)
            } else {
                crashed(worker, status: status)
            }
        case .current:
            guard var slot = slots[worker.policy], slot.current == id else { return }
            slot.current = nil
            slots[worker.policy] = slot
            crashed(worker, status: status)
        }
    }

    /// A replacement failed before it was ready: the old worker keeps serving.
    private mutating func reloadFailed(_ worker: Worker, reason: String) {
        log(
            .error, "reload failed: the new worker exited before it was ready; the old worker keeps serving",
            ["policy": worker.policy, "pid": pidText(worker), "reason": reason])
        for key in tickets.keys where tickets[key]!.waiting.contains(worker.policy) {
            tickets[key]!.waiting.remove(worker.policy)
            tickets[key]!.failed.append(worker.policy)
        }
    }

    /// The serving worker died, or a worker with nothing serving failed at start.
    private mutating func crashed(_ worker: Worker, status: String) {
        let name = worker.policy
        guard var slot = slots[name] else { return }
        slot.crashes = slot.crashes.filter { now - $0 < settings.crashWindow } + [now]
        let count = slot.crashes.count
        var meta = ["policy": name, "pid": pidText(worker), "status": status, "crashes": "\(count)"]
        if let failure = worker.failure { meta["reason"] = failure }
        if !worker.wasReady { meta["ready"] = "false" }
        if count > settings.crashLimit {
            meta["window"] = "\(settings.crashWindow / 1000)s"
            log(.critical, "worker keeps crashing; policy disabled until the next reload (its traffic is rejected)", meta)
            if let next = slot.next { retire(next) }
            slots[name] = nil
            disabled[name] = slot.version
            toClose.append(name)
            awaitingStart?.remove(name)
            for key in tickets.keys where tickets[key]!.waiting.contains(name) {
                tickets[key]!.waiting.remove(name)
                tickets[key]!.failed.append(name)
            }
            return
        }
        if slot.next != nil {
            // A replacement is already starting (a reload): it takes over when ready.
            slots[name] = slot
            meta["restart_in_ms"] = "0"
            log(.error, "worker exited unexpectedly; restarting", meta)
            return
        }
        let delay = restartDelay(after: count)
        meta["restart_in_ms"] = "\(delay)"
        log(.error, "worker exited unexpectedly; restarting", meta)
        slots[name] = slot
        if delay == 0 {
            spawnNext(name)
        } else {
            slots[name]!.restartAt = now + delay
        }
    }

    /// Immediately after the first crash when `restart_delay` is 0, then doubling from
    /// `restart_delay` (at least 100 ms) up to `restart_delay_max`.
    func restartDelay(after crashes: Int) -> Time {
        let base = settings.restartDelay
        if base == 0 && crashes == 1 { return 0 }
        return min(settings.restartDelayMax, max(base, 100) << Time(min(crashes - 1, 16)))
    }

    // MARK: reload

    private mutating func reload(_ versions: [String: Version], _ newSettings: Settings) {
        guard !stopping else {
            log(.info, "reload ignored: the gateway is stopping", [:])
            return
        }
        settings = newSettings
        var ticket = Ticket(added: [], changed: [], removed: [], waiting: [])
        for (name, version) in versions.sorted(by: { $0.key < $1.key }) {
            guard let slot = slots[name] else {
                disabled[name] = nil
                slots[name] = Slot(version: version)
                out.append(.open(policy: name))
                spawnNext(name)
                ticket.added.append(name)
                ticket.waiting.insert(name)
                continue
            }
            let upcoming = slot.next.flatMap { workers[$0]?.version }
            if version == upcoming {
                // Already being started by an earlier reload: this one waits for it too.
                ticket.changed.append(name)
                ticket.waiting.insert(name)
                continue
            }
            if version == slot.version {
                // Back to what serves: a newer worker still starting is not needed any more.
                if let next = slot.next, slot.current != nil {
                    retire(next)
                    slots[name]!.next = nil
                    for key in tickets.keys { tickets[key]!.waiting.remove(name) }
                }
                continue
            }
            spawnReplacement(name, version: version)
            ticket.changed.append(name)
            ticket.waiting.insert(name)
            for key in tickets.keys { tickets[key]!.waiting.remove(name) }
        }
        for name in slots.keys.sorted() where versions[name] == nil {
            let slot = slots.removeValue(forKey: name)!
            for id in [slot.current, slot.next].compactMap({ $0 }) { retire(id) }
            toClose.append(name)
            ticket.removed.append(name)
            for key in tickets.keys { tickets[key]!.waiting.remove(name) }
        }
        disabled = disabled.filter { versions[$0.key] != nil && slots[$0.key] == nil }
        tickets[nextTicket] = ticket
        nextTicket += 1
    }

    private mutating func rulesFailed(_ reason: String) {
        appliedRules = nil  // tried again at the next change
        if !announced && !stopping {
            terminate("start-up failed", 1, critical: "cannot start", error: reason)
        } else {
            log(.error, "cannot apply the new rules; the previous table stays", ["error": reason])
        }
    }

    // MARK: stop and time

    private mutating func terminate(_ reason: String, _ code: Int32, critical: String? = nil, error: String? = nil) {
        guard !stopping else { return }
        if let critical { log(.critical, critical, ["error": error ?? reason]) }
        stopping = true
        exitCode = code
        log(.info, "stopping", ["reason": reason, "workers": "\(workers.count)"])
        for id in workers.keys.sorted() {
            workers[id]!.state = .leaving
            if let pid = workers[id]!.pid { out.append(.signal(id, pid: pid, .terminate)) }
        }
        // Our copies of the sockets close: with the workers' closed too, new redirected
        // connections are refused (fail closed) while the old ones drain.
        for name in slots.keys.sorted() { out.append(.close(policy: name)) }
        slots = [:]
        tickets = [:]
        toClose = []
        stopDeadline = now + settings.stopGrace
    }

    private mutating func tick() {
        if stopping {
            if let deadline = stopDeadline, now >= deadline {
                stopDeadline = nil
                for id in workers.keys.sorted() {
                    guard var worker = workers[id], !worker.killed, let pid = worker.pid else { continue }
                    worker.killed = true
                    workers[id] = worker
                    log(.warning, "worker did not stop in time; killing it", ["policy": worker.policy, "pid": "\(pid)"])
                    out.append(.signal(id, pid: pid, .kill))
                }
            }
            return
        }
        for id in workers.keys.sorted() {
            guard var worker = workers[id], worker.state == .starting, !worker.killed,
                now >= worker.spawnedAt + settings.startTimeout, let pid = worker.pid
            else { continue }
            worker.killed = true
            worker.failure = "not ready within \(settings.startTimeout / 1000)s"
            workers[id] = worker
            log(.error, "worker not ready in time; killing it", ["policy": worker.policy, "pid": "\(pid)"])
            out.append(.signal(id, pid: pid, .kill))
        }
        for name in slots.keys.sorted() {
            guard let slot = slots[name], let at = slot.restartAt, now >= at, slot.next == nil, slot.current == nil else {
                continue
            }
            spawnNext(name)
        }
    }

    // MARK: end of each input

    private mutating func finishBatch() {
        if stopping {
            if workers.isEmpty && !finished {
                finished = true
                out.append(.finish(exitCode: exitCode))
            }
            return
        }
        allowAccepting()
        // The rules follow the slots; applied before anything is announced, so a client
        // reading `reloaded` or `gateway started` finds them in force.
        let rules = ruleEntries()
        if rules != appliedRules {
            appliedRules = rules
            out.append(.applyRules(rules))
        }
        for name in toClose { out.append(.close(policy: name)) }
        toClose = []
        if let waiting = awaitingStart, waiting.isEmpty, !announced {
            announced = true
            awaitingStart = nil
            out.append(.started(policies: slots.count, ready: slots.values.filter { $0.current != nil }.count))
        }
        for key in tickets.keys.sorted() where tickets[key]!.waiting.isEmpty {
            let ticket = tickets.removeValue(forKey: key)!
            var meta = [
                "added": ticket.added.joined(separator: ","), "changed": ticket.changed.joined(separator: ","),
                "removed": ticket.removed.joined(separator: ","), "policies": "\(slots.count)",
            ]
            if !ticket.failed.isEmpty { meta["failed"] = ticket.failed.sorted().joined(separator: ",") }
            log(ticket.failed.isEmpty ? .info : .error, "reloaded", meta)
            out.append(
                .reloadFinished(
                    ticket: key, added: ticket.added, changed: ticket.changed, removed: ticket.removed,
                    failed: ticket.failed.sorted()))
        }
    }

    /// Lets each policy's ready worker accept once no other worker of that policy still
    /// accepts from the socket (the one it replaces said `draining` or exited), or once
    /// `handoverTimeout` has passed. Until then connections wait in the socket's backlog:
    /// never two workers accepting from one socket, never a refused connection.
    private mutating func allowAccepting() {
        for (name, slot) in slots.sorted(by: { $0.key < $1.key }) {
            guard let id = slot.current, var worker = workers[id], !worker.accepting, let pid = worker.pid else { continue }
            let busy = workers.values.filter {
                $0.policy == name && $0.id != id && $0.accepting && !$0.stoppedAccepting
            }
            if !busy.isEmpty {
                guard let readyAt = worker.readyAt, now >= readyAt + settings.handoverTimeout else { continue }
                log(
                    .warning, "old worker did not stop accepting in time; the new one accepts too",
                    ["policy": name, "pid": "\(pid)", "old_pid": busy.compactMap(\.pid).map { "\($0)" }.joined(separator: ",")])
            }
            worker.accepting = true
            workers[id] = worker
            out.append(.allowAccept(id, pid: pid))
        }
    }

    /// What the firewall should hold now: every slot intercepted on its serving version
    /// (its new version only once that worker is ready), every disabled policy guarded.
    func ruleEntries() -> [RuleEntry] {
        let live = slots.map { RuleEntry(policy: $0.key, version: $0.value.version, intercepted: true) }
        let off = disabled.map { RuleEntry(policy: $0.key, version: $0.value, intercepted: false) }
        return (live + off).sorted { $0.policy < $1.policy }
    }

    private mutating func log(_ level: LogLine.Level, _ message: String, _ metadata: [String: String]) {
        out.append(.log(LogLine(level: level, message: message, metadata: metadata)))
    }

    private func pidText(_ worker: Worker) -> String { worker.pid.map { "\($0)" } ?? "?" }
}
