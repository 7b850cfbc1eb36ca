import CoreMetrics
import TLSGatePolicy

/// The gateway's metrics (names and labels documented in the README, stable), kept by the
/// supervisor through swift-metrics: per policy what its workers report, per policy's
/// worker its restarts and readiness, and the supervisor's own reloads, rules and DNS.
///
/// Used only on the supervisor's queue. The factory is the executable's (Prometheus) or a
/// test's.
public final class GatewayMetrics: @unchecked Sendable {
    /// The histograms, by `WorkerStats` histogram name; their buckets are
    /// `WorkerStats.bucketBounds` (the factory must be set up with them).
    public static let histogramNames: [String: String] = [
        "connect": "tlsgate_upstream_connect_duration_seconds",
        "handshake": "tlsgate_tls_handshake_duration_seconds",
        "duration": "tlsgate_connection_duration_seconds",
    ]

    /// The most observations one bucket of one `stats` line is replayed as.
    static let maximumReplay: UInt64 = 100_000

    private let factory: any MetricsFactory
    private var counters: [String: Counter] = [:]
    private var gauges: [String: Gauge] = [:]
    private var timers: [String: Timer] = [:]
    private var generation = 0

    public init(factory: any MetricsFactory) {
        self.factory = factory
        gauge("tlsgate_config_reload_generation").record(0)
        gauge("tlsgate_config_last_reload_successful").record(1)
        gauge("tlsgate_rules_applied").record(0)
        counter("tlsgate_rules_apply_failures_total").increment(by: 0)
        counter("tlsgate_dns_refresh_failures_total").increment(by: 0)
    }

    // MARK: what workers report

    /// Adds a worker's increments (`StatsAccumulator.add`) to its policy's counters.
    public func add(policy: String, increments: [String: UInt64]) {
        var observations: [String: [Int: (count: UInt64, ns: UInt64)]] = [:]
        for (key, amount) in increments where amount > 0 {
            let parts = key.split(separator: ".").map(String.init)
            switch (parts.first, parts.count) {
            case ("accepted", 1):
                counter("tlsgate_connections_accepted_total", [("policy", policy)]).increment(by: Int64(clamping: amount))
            case ("closed", 2):
                let name: String
                switch WorkerStats.reasons[parts[1]] {
                case .ok?: name = "tlsgate_connections_completed_total"
                case .refused?: name = "tlsgate_connections_refused_total"
                case .failed?, nil: name = "tlsgate_connections_failed_total"
                }
                counter(name, [("policy", policy), ("reason", parts[1])]).increment(by: Int64(clamping: amount))
            case ("handshakes", 2):
                counter("tlsgate_tls_handshakes_total", [("policy", policy), ("session", parts[1])])
                    .increment(by: Int64(clamping: amount))
            case ("bytes", 2):
                counter("tlsgate_relayed_bytes_total", [("policy", policy), ("direction", parts[1])])
                    .increment(by: Int64(clamping: amount))
            case (let histogram?, 3):
                guard let bucket = Int(parts[1]) else { continue }
                var entry = observations[histogram, default: [:]][bucket] ?? (0, 0)
                if parts[2] == "count" { entry.count = amount } else { entry.ns = amount }
                observations[histogram, default: [:]][bucket] = entry
            default:
                continue
            }
        }
        for (histogram, buckets) in observations {
            guard let name = Self.histogramNames[histogram] else { continue }
            let timer = self.timer(name, [("policy", policy)])
            for (_, entry) in buckets where entry.count > 0 {
                // The worker counts per bucket and sums per bucket; spreading the sum over
                // the count keeps every observation in its bucket and the sum exact.
                // Bounded: a broken worker cannot make this loop run away.
                let count = min(entry.count, Self.maximumReplay)
                let base = entry.ns / count
                let extra = entry.ns % count
                for index in 0..<count {
                    timer.recordNanoseconds(Int64(clamping: base + (index < extra ? 1 : 0)))
                }
            }
        }
    }

    public func setActive(policy: String, _ value: UInt64) {
        gauge("tlsgate_connections_active", [("policy", policy)]).record(Int64(clamping: value))
    }

    // MARK: the supervisor's own

    public func setReady(policy: String, _ ready: Bool) {
        gauge("tlsgate_worker_ready", [("policy", policy)]).record(ready ? 1 : 0)
    }

    /// A policy left the config: its levels go (its counters stay).
    public func removePolicy(_ policy: String) {
        for name in ["tlsgate_worker_ready", "tlsgate_connections_active"] {
            let key = Self.key(name, [("policy", policy)])
            gauges.removeValue(forKey: key)?.destroy()
        }
    }

    public func workerRestarted(policy: String) {
        counter("tlsgate_worker_restarts_total", [("policy", policy)]).increment()
    }

    /// A reload ended: `live` when its config is in force, false when it was refused or a
    /// new worker failed. `accepted` when its config was taken (a new generation).
    public func reloaded(live: Bool, accepted: Bool, at unixTime: Double) {
        if accepted {
            generation += 1
            gauge("tlsgate_config_reload_generation").record(Int64(generation))
        }
        gauge("tlsgate_config_last_reload_successful").record(live ? 1 : 0)
        if live { gauge("tlsgate_config_last_reload_success_timestamp_seconds").record(unixTime) }
    }

    public func started(at unixTime: Double) {
        gauge("tlsgate_config_last_reload_success_timestamp_seconds").record(unixTime)
    }

    public func rulesApplied(_ ok: Bool) {
        gauge("tlsgate_rules_applied").record(ok ? 1 : 0)
        if !ok { counter("tlsgate_rules_apply_failures_total").increment() }
    }

    public func dnsRefreshFailed() {
        counter("tlsgate_dns_refresh_failures_total").increment()
    }

    // MARK: handles

    private static func key(_ name: String, _ labels: [(String, String)]) -> String {
        ([name] + labels.map { "\($0.0)=\($0.1)" }).joined(separator: "|")
    }

    private func counter(_ name: String, _ labels: [(String, String)] = []) -> Counter {
        cached(\.counters, name, labels) { Counter(label: name, dimensions: labels, factory: factory) }
    }

    private func gauge(_ name: String, _ labels: [(String, String)] = []) -> Gauge {
        cached(\.gauges, name, labels) { Gauge(label: name, dimensions: labels, factory: factory) }
    }

    private func timer(_ name: String, _ labels: [(String, String)]) -> Timer {
        cached(\.timers, name, labels) { Timer(label: name, dimensions: labels, factory: factory) }
    }

    /// The handle for a name and labels, made once.
    private func cached<Handle>(
        _ store: ReferenceWritableKeyPath<GatewayMetrics, [String: Handle]>, _ name: String, _ labels: [(String, String)],
        make: () -> Handle
    ) -> Handle {
        let key = Self.key(name, labels)
        if let found = self[keyPath: store][key] { return found }
        let made = make()
        self[keyPath: store][key] = made
        return made
    }
}
