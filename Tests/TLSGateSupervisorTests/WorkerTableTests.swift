import Testing

@testable import TLSGateSupervisor

/// Drives a `WorkerTable` the way `Supervisor` does, with a mock clock and pretend pids:
/// every `spawn` succeeds (unless told otherwise) and is fed back as `spawned`.
struct TableDriver {
    var table: WorkerTable
    var now: UInt64 = 1000
    var nextPid: Int32 = 100
    var failSpawns = false
    var failRules = false
    /// Every action performed, in order.
    var actions: [WorkerTable.Action] = []
    /// Pids signalled, with the signal.
    var signals: [(Int32, WorkerTable.Signal)] = []
    var finished: Int32?

    init(_ settings: WorkerTable.Settings = .init()) {
        table = WorkerTable(settings: settings)
    }

    mutating func send(_ input: WorkerTable.Input) {
        var pending = [input]
        while !pending.isEmpty {
            let next = pending.removeFirst()
            for action in table.handle(next, now: now) {
                actions.append(action)
                switch action {
                case .spawn(let id, _, _):
                    if failSpawns {
                        pending.append(.spawnFailed(id, reason: "EAGAIN"))
                    } else {
                        nextPid += 1
                        pending.append(.spawned(id, pid: nextPid))
                    }
                case .signal(_, let pid, let signal): signals.append((pid, signal))
                case .applyRules: if failRules { pending.append(.rulesFailed(reason: "nft failed")) }
                case .finish(let code): finished = code
                default: break
                }
            }
        }
    }

    mutating func advance(_ ms: UInt64) {
        now += ms
        send(.tick)
    }

    /// Runs every timer due within `ms`, in steps at each deadline.
    mutating func run(for ms: UInt64) {
        let end = now + ms
        while let deadline = table.nextDeadline, deadline <= end {
            now = max(now, deadline)
            send(.tick)
        }
        now = end
    }

    /// Pids let accept, in order.
    var accepting: [Int32] {
        actions.compactMap { if case .allowAccept(_, let pid) = $0 { return pid } else { return nil } }
    }

    func pid(_ policy: String) -> Int32? { table.current(policy)?.pid }
    func nextPid(of policy: String) -> Int32? { table.next(policy)?.pid }
    func id(_ pid: Int32) -> WorkerTable.WorkerID { table.worker(pid: pid)!.id }

    mutating func ready(_ pid: Int32) { send(.ready(id(pid))) }
    mutating func exit(_ pid: Int32, _ status: String = "killed by signal 9") {
        if let worker = table.worker(pid: pid) { send(.exited(worker.id, status: status)) }
    }
    /// Marks every starting worker ready.
    mutating func readyAll() {
        for worker in table.workers.values where worker.state == .starting && worker.pid != nil {
            send(.ready(worker.id))
        }
    }

    var logs: [WorkerTable.LogLine] {
        actions.compactMap { if case .log(let line) = $0 { return line } else { return nil } }
    }
    func logged(_ message: String) -> [WorkerTable.LogLine] { logs.filter { $0.message.hasPrefix(message) } }
    var spawnCount: Int { actions.filter { if case .spawn = $0 { return true } else { return false } }.count }
    var lastRules: [WorkerTable.RuleEntry]? {
        for action in actions.reversed() { if case .applyRules(let rules) = action { return rules } }
        return nil
    }
    var startedCount: Int { actions.filter { if case .started = $0 { return true } else { return false } }.count }
    mutating func clear() {
        actions = []
        signals = []
    }
}

@Suite struct WorkerTableTests {
    static let fast = WorkerTable.Settings(
        restartDelay: 0, restartDelayMax: 5000, crashLimit: 5, crashWindow: 60000, stopGrace: 15000, startTimeout: 30000)

    @Test func startOpensSpawnsAppliesRulesAndAnnouncesOnceReady() {
        var d = TableDriver(Self.fast)
        d.send(.start(["web": "v1", "ldap": "l1"]))
        #expect(d.actions.first == .open(policy: "ldap"))
        #expect(d.spawnCount == 2)
        #expect(d.lastRules?.map(\.policy) == ["ldap", "web"])
        #expect(d.startedCount == 0, "not announced before the workers are ready")
        d.ready(d.nextPid(of: "web")!)
        #expect(d.startedCount == 0)
        d.ready(d.nextPid(of: "ldap")!)
        #expect(d.startedCount == 1)
        #expect(d.actions.contains(.started(policies: 2, ready: 2)))
        #expect(d.logged("worker started").count == 2)
    }

    @Test func crashLoopBacksOffThenDisablesButKeepsTheGuard() {
        var d = TableDriver(
            .init(restartDelay: 0, restartDelayMax: 1000, crashLimit: 3, crashWindow: 60000, stopGrace: 1000, startTimeout: 30000))
        d.send(.start(["web": "v1"]))
        d.readyAll()
        // First crash: restarted at once.
        d.exit(d.pid("web")!)
        #expect(d.spawnCount == 2)
        #expect(d.logged("worker exited unexpectedly; restarting").last?.metadata["restart_in_ms"] == "0")
        d.readyAll()
        // Second: 200 ms (100 ms doubled), not before.
        d.exit(d.pid("web")!)
        #expect(d.logged("worker exited unexpectedly; restarting").last?.metadata["restart_in_ms"] == "200")
        #expect(d.spawnCount == 2)
        d.advance(199)
        #expect(d.spawnCount == 2)
        d.advance(1)
        #expect(d.spawnCount == 3)
        d.readyAll()
        d.exit(d.pid("web")!)
        #expect(d.logged("worker exited unexpectedly; restarting").last?.metadata["restart_in_ms"] == "400")
        d.run(for: 400)
        d.readyAll()
        // Fourth crash within the window: more than crash_limit 3 → disabled.
        d.clear()
        d.exit(d.pid("web")!)
        #expect(d.logged("worker keeps crashing; policy disabled").count == 1)
        #expect(d.lastRules == [.init(policy: "web", version: "v1", intercepted: false)])
        #expect(d.actions.contains(.close(policy: "web")))
        d.run(for: 10000)
        #expect(d.spawnCount == 0, "a disabled policy is not restarted")
        // A reload brings it back (as added), with a fresh crash count.
        d.send(.reload(["web": "v1"], d.table.settings))
        #expect(d.actions.contains(.open(policy: "web")))
        d.readyAll()
        #expect(d.logged("reloaded").last?.metadata["added"] == "web")
        #expect(d.lastRules == [.init(policy: "web", version: "v1", intercepted: true)])
    }

    @Test func crashesOutsideTheWindowDoNotAccumulate() {
        var d = TableDriver(
            .init(restartDelay: 0, restartDelayMax: 5000, crashLimit: 1, crashWindow: 1000, stopGrace: 1000, startTimeout: 30000))
        d.send(.start(["web": "v1"]))
        for _ in 0..<5 {
            d.readyAll()
            d.exit(d.pid("web")!)
            d.run(for: 5000)
        }
        #expect(d.logged("worker keeps crashing").isEmpty)
        #expect(d.table.next("web") != nil)
    }

    @Test func reloadRetiresTheOldWorkerOnlyWhenTheNewOneIsReady() {
        var d = TableDriver(Self.fast)
        d.send(.start(["web": "v1"]))
        d.readyAll()
        let old = d.pid("web")!
        d.clear()
        d.send(.reload(["web": "v2"], Self.fast))
        #expect(d.spawnCount == 1)
        #expect(d.signals.isEmpty, "the old worker serves until the new one is ready")
        #expect(d.logged("reloaded").isEmpty)
        #expect(d.lastRules == nil, "the rules keep the serving version")
        let new = d.nextPid(of: "web")!
        d.ready(new)
        #expect(d.signals.map(\.0) == [old])
        #expect(d.lastRules == [.init(policy: "web", version: "v2", intercepted: true)])
        #expect(d.logged("reloaded").last?.metadata["changed"] == "web")
        // The rules are applied before `reloaded` is logged.
        let rulesAt = d.actions.lastIndex { if case .applyRules = $0 { return true } else { return false } }!
        let loggedAt = d.actions.lastIndex { if case .log(let l) = $0 { return l.message == "reloaded" } else { return false } }!
        #expect(rulesAt < loggedAt)
        d.exit(old, "exit status 0")
        #expect(d.logged("old worker finished draining").count == 1)
        #expect(d.pid("web") == new)
    }

    @Test func aNewWorkerThatFailsBeforeReadyLeavesTheOldOneServing() {
        var d = TableDriver(Self.fast)
        d.send(.start(["web": "v1"]))
        d.readyAll()
        let old = d.pid("web")!
        d.clear()
        d.send(.reload(["web": "v2"], Self.fast))
        let new = d.nextPid(of: "web")!
        d.send(.reportedFailure(d.id(new), reason: "cannot load /etc/ca.pem"))
        d.exit(new, "exit status 2")
        #expect(d.pid("web") == old)
        #expect(d.signals.isEmpty)
        let failed = d.logged("reload failed")
        #expect(failed.count == 1)
        #expect(failed.first?.metadata["reason"] == "cannot load /etc/ca.pem")
        #expect(d.logged("reloaded").last?.metadata["failed"] == "web")
        #expect(d.logged("worker exited unexpectedly").isEmpty, "not a crash of the serving worker")
        d.run(for: 60000)
        #expect(d.spawnCount == 1, "a failed new version is not retried until the next reload")
        // The same version again on the next SIGHUP is tried again.
        d.send(.reload(["web": "v2"], Self.fast))
        #expect(d.spawnCount == 2)
    }

    @Test func spawnFailureDuringReloadKeepsTheOldWorker() {
        var d = TableDriver(Self.fast)
        d.send(.start(["web": "v1"]))
        d.readyAll()
        let old = d.pid("web")!
        d.failSpawns = true
        d.send(.reload(["web": "v2"], Self.fast))
        #expect(d.pid("web") == old)
        #expect(d.logged("reload failed").first?.metadata["reason"] == "cannot spawn: EAGAIN")
    }

    @Test func reloadDuringStart() {
        var d = TableDriver(Self.fast)
        d.send(.start(["web": "v1"]))
        let first = d.nextPid(of: "web")!
        d.send(.reload(["web": "v2"], Self.fast))
        // Nothing served yet: the starting v1 worker is superseded, v2 starts instead.
        #expect(d.signals.map(\.0) == [first])
        let second = d.nextPid(of: "web")!
        #expect(second != first)
        #expect(d.table.next("web")?.version == "v2")
        d.ready(first)  // a late report from the superseded worker changes nothing
        #expect(d.pid("web") == nil)
        d.ready(second)
        #expect(d.pid("web") == second)
        #expect(d.startedCount == 1)
        #expect(d.lastRules == [.init(policy: "web", version: "v2", intercepted: true)])
        d.exit(first, "exit status 0")
        #expect(d.logged("worker exited unexpectedly").isEmpty)
    }

    @Test func doubleSIGHUP() {
        var d = TableDriver(Self.fast)
        d.send(.start(["web": "v1"]))
        d.readyAll()
        let old = d.pid("web")!
        d.send(.reload(["web": "v2"], Self.fast))
        let v2 = d.nextPid(of: "web")!
        // The same config again: the v2 worker already starting is enough.
        d.send(.reload(["web": "v2"], Self.fast))
        #expect(d.nextPid(of: "web") == v2)
        #expect(d.spawnCount == 2)
        // A third, different config: v2 is superseded by v3; v1 still serves.
        d.send(.reload(["web": "v3"], Self.fast))
        let v3 = d.nextPid(of: "web")!
        #expect(d.signals.map(\.0) == [v2])
        #expect(d.pid("web") == old)
        d.ready(v3)
        #expect(d.pid("web") == v3)
        #expect(d.signals.map(\.0) == [v2, old])
        // Every SIGHUP ends with one `reloaded` line.
        #expect(d.logged("reloaded").count == 3)
    }

    @Test func reloadBackToTheServingVersionCancelsTheStartingOne() {
        var d = TableDriver(Self.fast)
        d.send(.start(["web": "v1"]))
        d.readyAll()
        let old = d.pid("web")!
        d.send(.reload(["web": "v2"], Self.fast))
        let v2 = d.nextPid(of: "web")!
        d.send(.reload(["web": "v1"], Self.fast))
        #expect(d.signals.map(\.0) == [v2])
        #expect(d.table.next("web") == nil)
        #expect(d.pid("web") == old)
        #expect(d.logged("reloaded").count == 2)
    }

    @Test func sighupDuringDrain() {
        var d = TableDriver(Self.fast)
        d.send(.start(["web": "v1"]))
        d.readyAll()
        let v1 = d.pid("web")!
        d.send(.reload(["web": "v2"], Self.fast))
        d.readyAll()
        let v2 = d.pid("web")!
        // v1 is draining; another reload replaces v2, v1 keeps draining untouched.
        d.send(.reload(["web": "v3"], Self.fast))
        d.readyAll()
        #expect(d.signals.map(\.0) == [v1, v2])
        d.exit(v2, "exit status 0")
        d.exit(v1, "exit status 0")
        #expect(d.logged("old worker finished draining").count == 2)
        #expect(d.logged("worker exited unexpectedly").isEmpty)
        #expect(d.table.workers.count == 1)
    }

    @Test func serving_worker_crashes_while_its_replacement_starts() {
        var d = TableDriver(Self.fast)
        d.send(.start(["web": "v1"]))
        d.readyAll()
        d.send(.reload(["web": "v2"], Self.fast))
        let v2 = d.nextPid(of: "web")!
        d.exit(d.pid("web")!)
        #expect(d.spawnCount == 2, "the starting replacement takes over; no extra restart")
        d.ready(v2)
        #expect(d.pid("web") == v2)
    }

    @Test func replacementFailsAfterTheServingWorkerDied_restartsTheLastGoodVersion() {
        var d = TableDriver(Self.fast)
        d.send(.start(["web": "v1"]))
        d.readyAll()
        d.send(.reload(["web": "v2"], Self.fast))
        let v2 = d.nextPid(of: "web")!
        d.exit(d.pid("web")!)
        d.exit(v2, "exit status 2")
        d.run(for: 1000)
        #expect(d.table.next("web")?.version == "v1")
    }

    @Test func sigchldStormOfUnknownAndRepeatedExits() {
        var d = TableDriver(Self.fast)
        d.send(.start(["a": "a1", "b": "b1", "c": "c1"]))
        d.readyAll()
        let pids = ["a", "b", "c"].map { d.pid($0)! }
        d.clear()
        // Every worker dies at once, some exits reported twice, some for unknown workers.
        for pid in pids { d.exit(pid) }
        for pid in pids { d.exit(pid) }
        d.send(.exited(9999, status: "exit status 0"))
        #expect(d.spawnCount == 3, "one restart per policy, not per report")
        #expect(d.logged("worker exited unexpectedly").count == 3)
        d.readyAll()
        #expect(Set(["a", "b", "c"].compactMap { d.pid($0) }).count == 3)
    }

    @Test func sigtermDuringReload() {
        var d = TableDriver(Self.fast)
        d.send(.start(["web": "v1"]))
        d.readyAll()
        let v1 = d.pid("web")!
        d.send(.reload(["web": "v2"], Self.fast))
        let v2 = d.nextPid(of: "web")!
        d.clear()
        d.send(.terminate(reason: "SIGTERM", exitCode: 0))
        #expect(Set(d.signals.map(\.0)) == [v1, v2])
        #expect(d.actions.contains(.close(policy: "web")))
        #expect(d.logged("stopping").count == 1)
        d.ready(v2)  // too late: nothing changes while stopping
        d.send(.reload(["web": "v3"], Self.fast))
        #expect(d.spawnCount == 0)
        #expect(d.logged("reloaded").isEmpty)
        d.exit(v2, "exit status 0")
        #expect(d.finished == nil)
        d.exit(v1, "exit status 0")
        #expect(d.finished == 0)
        #expect(d.logged("worker stopped").count == 2)
    }

    @Test func stopKillsWhatIsLeftAfterTheGrace() {
        var d = TableDriver(Self.fast)
        d.send(.start(["web": "v1"]))
        d.readyAll()
        let pid = d.pid("web")!
        d.send(.terminate(reason: "SIGTERM", exitCode: 0))
        d.advance(14999)
        #expect(!d.signals.contains { $0 == (pid, .kill) })
        d.advance(1)
        #expect(d.signals.contains { $0 == (pid, .kill) })
        #expect(d.logged("worker did not stop in time").count == 1)
        d.exit(pid)
        #expect(d.finished == 0)
    }

    @Test func aWorkerThatNeverReportsReadyIsKilledAndCounted() {
        var d = TableDriver(Self.fast)
        d.send(.start(["web": "v1"]))
        d.readyAll()
        let old = d.pid("web")!
        d.send(.reload(["web": "v2"], Self.fast))
        let v2 = d.nextPid(of: "web")!
        d.advance(30000)
        #expect(d.signals.contains { $0 == (v2, .kill) })
        d.exit(v2)
        #expect(d.logged("reload failed").first?.metadata["reason"] == "not ready within 30s")
        #expect(d.pid("web") == old)
    }

    @Test func addedAndRemovedPolicies() {
        var d = TableDriver(Self.fast)
        d.send(.start(["first": "f1"]))
        d.readyAll()
        let first = d.pid("first")!
        d.clear()
        d.send(.reload(["second": "s1"], Self.fast))
        #expect(d.actions.contains(.open(policy: "second")))
        #expect(d.signals.map(\.0) == [first])
        // The removed policy's rules go at once; its socket closes after the rules.
        let rulesAt = d.actions.firstIndex { if case .applyRules = $0 { return true } else { return false } }!
        let closeAt = d.actions.firstIndex(of: .close(policy: "first"))!
        #expect(rulesAt < closeAt)
        #expect(d.lastRules?.map(\.policy) == ["second"])
        d.readyAll()
        let line = d.logged("reloaded").last!
        #expect(line.metadata["added"] == "second")
        #expect(line.metadata["removed"] == "first")
        d.exit(first, "exit status 0")
        #expect(d.logged("old worker finished draining").count == 1)
    }

    @Test func unchangedReloadIsReportedAtOnceAndSpawnsNothing() {
        var d = TableDriver(Self.fast)
        d.send(.start(["web": "v1"]))
        d.readyAll()
        d.clear()
        d.send(.reload(["web": "v1"], Self.fast))
        #expect(d.spawnCount == 0)
        #expect(d.logged("reloaded").count == 1)
        #expect(d.lastRules == nil, "the same rules are not applied again")
    }

    @Test func rulesFailingAtStartStopsTheGateway() {
        var d = TableDriver(Self.fast)
        d.failRules = true
        d.send(.start(["web": "v1"]))
        #expect(d.logged("cannot start").count == 1)
        #expect(d.table.stopping)
        d.exit(d.table.workers.values.first!.pid!)
        #expect(d.finished == 1)
    }

    @Test func openFailureOfAnAddedPolicyLeavesTheOthers() {
        var d = TableDriver(Self.fast)
        d.send(.start(["web": "v1"]))
        d.readyAll()
        d.send(.reload(["web": "v1", "new": "n1"], Self.fast))
        d.send(.openFailed("new", reason: "EADDRINUSE"))
        #expect(d.table.policies == ["web"])
        #expect(d.logged("reloaded").last?.metadata["failed"] == "new")
    }

    @Test func neverTwoWorkersAcceptFromOneSocket() {
        var d = TableDriver(Self.fast)
        d.send(.start(["web": "v1"]))
        let first = d.nextPid(of: "web")!
        #expect(d.accepting.isEmpty, "not before it is ready")
        d.ready(first)
        #expect(d.accepting == [first], "no predecessor: at once")
        d.clear()
        d.send(.reload(["web": "v2"], Self.fast))
        let second = d.nextPid(of: "web")!
        d.ready(second)
        #expect(d.signals.map(\.0) == [first])
        #expect(d.accepting.isEmpty, "the old worker may still be accepting")
        d.send(.stoppedAccepting(d.id(first)))
        #expect(d.accepting == [second])
        // The old one drains on; the new one is not let accept twice.
        d.exit(first, "exit status 0")
        #expect(d.accepting == [second])
    }

    @Test func handoverWhenThePredecessorExitsOrTimesOut() {
        var d = TableDriver(Self.fast)
        d.send(.start(["web": "v1"]))
        d.readyAll()
        let first = d.pid("web")!
        d.send(.reload(["web": "v2"], Self.fast))
        let second = d.nextPid(of: "web")!
        d.ready(second)
        d.clear()
        d.exit(first, "exit status 0")
        #expect(d.accepting == [second], "an exited predecessor accepts nothing")
        // A predecessor that never says `draining`: the new worker accepts after the timeout.
        d.send(.reload(["web": "v3"], Self.fast))
        let third = d.nextPid(of: "web")!
        d.ready(third)
        d.clear()
        d.advance(1999)
        #expect(d.accepting.isEmpty)
        d.advance(1)
        #expect(d.accepting == [third])
        #expect(d.logged("old worker did not stop accepting in time").count == 1)
    }

    @Test func aRestartedWorkerAcceptsAtOnce() {
        var d = TableDriver(Self.fast)
        d.send(.start(["web": "v1"]))
        d.readyAll()
        d.exit(d.pid("web")!)
        d.clear()
        d.readyAll()
        #expect(d.accepting.count == 1)
    }

    @Test func misbehavingWorkerIsKilled() {
        var d = TableDriver(Self.fast)
        d.send(.start(["web": "v1"]))
        d.readyAll()
        let pid = d.pid("web")!
        d.send(.misbehaved(d.id(pid), reason: "an unknown message"))
        #expect(d.signals.contains { $0 == (pid, .kill) })
        d.exit(pid)
        #expect(d.logged("worker exited unexpectedly; restarting").first?.metadata["reason"]?.hasPrefix("broke the control") == true)
    }
}
