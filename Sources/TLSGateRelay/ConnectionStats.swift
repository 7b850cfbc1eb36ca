import NIOConcurrencyHelpers
import TLSGatePolicy

/// A worker's running totals of its connections, in `WorkerStats` keys: what its `stats`
/// lines tell the supervisor. Updated from every event loop, hence the lock; a handful of
/// updates per connection.
public final class ConnectionStats: Sendable {
    private struct State {
        var totals: [String: UInt64] = [:]
        var accepted: UInt64 = 0
        var closed: UInt64 = 0
        /// What `changes()` returned last, to send only what moved.
        var sent: [String: UInt64] = [:]
        /// Accepted and closed counts at the last `quietAfterActivity()` call, and when it
        /// last answered true.
        var seen: (accepted: UInt64, closed: UInt64) = (0, 0)
        var quietAt: (accepted: UInt64, closed: UInt64) = (0, 0)
    }

    private let state = NIOLockedValueBox(State())

    public init() {}

    func accepted() {
        state.withLockedValue {
            $0.accepted += 1
            $0.totals["accepted"] = $0.accepted
        }
    }

    /// A histogram observation, in nanoseconds.
    func observe(_ histogram: String, nanoseconds: Int64) {
        let value = UInt64(max(0, nanoseconds))
        let bucket = WorkerStats.bucket(nanoseconds: value)
        let keys = Self.bucketKeys[histogram]?[bucket] ?? (count: "\(histogram).\(bucket).count", ns: "\(histogram).\(bucket).ns")
        state.withLockedValue {
            $0.totals[keys.count, default: 0] += 1
            $0.totals[keys.ns, default: 0] &+= value
        }
    }

    /// Every histogram bucket's two keys, built once rather than on every observation.
    private static let bucketKeys: [String: [(count: String, ns: String)]] = Dictionary(
        uniqueKeysWithValues: WorkerStats.histograms.map { histogram in
            (histogram, (0...WorkerStats.bucketBounds.count).map { ("\(histogram).\($0).count", "\(histogram).\($0).ns") })
        })
    /// `closed.REASON` for every reason.
    private static let closedKeys: [RelayReason: String] = Dictionary(
        uniqueKeysWithValues: RelayReason.all.map { ($0, "closed.\($0)") })

    func handshake(resumed: Bool, nanoseconds: Int64) {
        state.withLockedValue { $0.totals[resumed ? "handshakes.resumed" : "handshakes.full", default: 0] += 1 }
        observe("handshake", nanoseconds: nanoseconds)
    }

    func closed(reason: RelayReason, bytesUp: Int, bytesDown: Int, nanoseconds: Int64) {
        state.withLockedValue {
            $0.closed += 1
            $0.totals[Self.closedKeys[reason] ?? "closed.\(reason)", default: 0] += 1
            if bytesUp > 0 { $0.totals["bytes.up", default: 0] += UInt64(bytesUp) }
            if bytesDown > 0 { $0.totals["bytes.down", default: 0] += UInt64(bytesDown) }
        }
        observe("duration", nanoseconds: nanoseconds)
    }

    /// True once per quiet spell: no connection accepted or closed since the previous
    /// call, but some since the last time this answered true (so a worker with nothing to
    /// do answers true once, not on every call).
    func quietAfterActivity() -> Bool {
        state.withLockedValue { state in
            let now = (accepted: state.accepted, closed: state.closed)
            defer { state.seen = now }
            guard now == state.seen, now != state.quietAt else { return false }
            state.quietAt = now
            return true
        }
    }

    /// Every total (and `active`) that changed since the last call.
    public func changes() -> [String: UInt64] {
        state.withLockedValue { state in
            var now = state.totals
            now[WorkerStats.gaugeKey] = state.accepted &- min(state.closed, state.accepted)
            let changed = now.filter { state.sent[$0.key] != $0.value }
            state.sent = now
            return changed
        }
    }
}
