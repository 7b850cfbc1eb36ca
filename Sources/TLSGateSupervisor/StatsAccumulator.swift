import TLSGatePolicy

/// Turns the running totals each worker reports (`stats` lines) into increments of the
/// gateway's counters, so the counters survive worker restarts and replacements: a new
/// worker starts from 0 and only what it adds is counted; a worker that exits is
/// forgotten (its connections are gone, and so is its share of `active`).
///
/// A value type without clocks or processes, tested on its own.
public struct StatsAccumulator: Sendable {
    public typealias WorkerID = Int

    private struct Seen: Sendable {
        let policy: String
        var totals: [String: UInt64] = [:]
    }

    private var workers: [WorkerID: Seen] = [:]

    public init() {}

    /// The increments `totals` (one `stats` line of `worker`, serving `policy`) means since
    /// that worker's previous lines, by key (without `active`, a level); an error when a
    /// total went down, which breaks the protocol.
    public mutating func add(worker: WorkerID, policy: String, totals: [String: UInt64]) -> Result<[String: UInt64], StatsError> {
        var seen = workers[worker] ?? Seen(policy: policy)
        var increments: [String: UInt64] = [:]
        for (key, value) in totals where key != WorkerStats.gaugeKey {
            let before = seen.totals[key] ?? 0
            guard value >= before else { return .failure(StatsError("\(key) went down from \(before) to \(value)")) }
            if value > before { increments[key] = value - before }
        }
        seen.totals.merge(totals) { $1 }
        workers[worker] = seen
        return .success(increments)
    }

    /// Stops counting a worker that exited.
    public mutating func remove(worker: WorkerID) {
        workers[worker] = nil
    }

    /// Open connections of a policy: the sum of its live workers' `active`.
    public func active(policy: String) -> UInt64 {
        workers.values.filter { $0.policy == policy }.reduce(0) { $0 &+ ($1.totals[WorkerStats.gaugeKey] ?? 0) }
    }

    /// Open connections of one worker.
    public func active(worker: WorkerID) -> UInt64 {
        workers[worker]?.totals[WorkerStats.gaugeKey] ?? 0
    }
}

/// A `stats` line that contradicts the worker's earlier ones.
public struct StatsError: Error, Sendable, Equatable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
