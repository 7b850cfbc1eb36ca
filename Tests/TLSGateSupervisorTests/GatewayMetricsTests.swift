import Prometheus
import TLSGatePolicy
import Testing

@testable import TLSGateSupervisor

/// The supervisor's counters survive worker restarts: a new worker's totals start at 0
/// and only its increments count. Checked on what a Prometheus registry exports.
@Suite struct GatewayMetricsTests {
    private func make() -> (GatewayMetrics, PrometheusCollectorRegistry) {
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        let buckets = WorkerStats.bucketBounds.map { Duration.nanoseconds(Int64($0)) }
        for name in GatewayMetrics.histogramNames.values { factory.durationHistogramBuckets[name] = buckets }
        return (GatewayMetrics(factory: factory), registry)
    }

    private func exported(_ registry: PrometheusCollectorRegistry) -> [String: String] {
        var buffer: [UInt8] = []
        registry.emit(into: &buffer)
        var values: [String: String] = [:]
        for line in String(decoding: buffer, as: UTF8.self).split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " ") else { continue }
            values[String(line[..<space])] = String(line[line.index(after: space)...])
        }
        return values
    }

    @Test func accumulatorCountsIncrementsAndForgetsExitedWorkers() {
        var stats = StatsAccumulator()
        #expect(stats.add(worker: 1, policy: "web", totals: ["accepted": 2, "active": 2]) == .success(["accepted": 2]))
        #expect(stats.add(worker: 1, policy: "web", totals: ["accepted": 5, "active": 1]) == .success(["accepted": 3]))
        #expect(stats.add(worker: 1, policy: "web", totals: ["accepted": 5]) == .success([:]))
        #expect(stats.add(worker: 2, policy: "web", totals: ["accepted": 1, "active": 1]) == .success(["accepted": 1]))
        #expect(stats.active(policy: "web") == 2)
        #expect(stats.active(worker: 1) == 1)
        stats.remove(worker: 1)
        #expect(stats.active(policy: "web") == 1)
        // A restarted worker (new id) starts from 0 again.
        #expect(stats.add(worker: 3, policy: "web", totals: ["accepted": 1]) == .success(["accepted": 1]))
        // Going down breaks the protocol.
        #expect(stats.add(worker: 2, policy: "web", totals: ["accepted": 0]) == .failure(StatsError("accepted went down from 1 to 0")))
    }

    @Test func countersSurviveARestart() {
        let (metrics, registry) = make()
        var stats = StatsAccumulator()
        func report(_ worker: Int, _ totals: [String: UInt64]) {
            guard case .success(let increments) = stats.add(worker: worker, policy: "web", totals: totals) else {
                Issue.record("refused")
                return
            }
            metrics.add(policy: "web", increments: increments)
            metrics.setActive(policy: "web", stats.active(policy: "web"))
        }
        report(1, ["accepted": 3, "active": 1, "closed.completed": 1, "closed.tls_verify_failed": 1, "handshakes.full": 1, "bytes.up": 100])
        report(1, ["accepted": 4, "active": 0, "closed.completed": 2, "closed.tls_verify_failed": 1, "closed.destination_not_in_policy": 1, "handshakes.resumed": 1, "bytes.up": 150])
        stats.remove(worker: 1)
        metrics.workerRestarted(policy: "web")
        report(2, ["accepted": 2, "active": 1, "closed.completed": 1, "bytes.up": 10, "bytes.down": 7])
        let values = exported(registry)
        #expect(values["tlsgate_connections_accepted_total{policy=\"web\"}"] == "6")
        #expect(values["tlsgate_connections_completed_total{policy=\"web\",reason=\"completed\"}"] == "3")
        #expect(values["tlsgate_connections_failed_total{policy=\"web\",reason=\"tls_verify_failed\"}"] == "1")
        #expect(values["tlsgate_connections_refused_total{policy=\"web\",reason=\"destination_not_in_policy\"}"] == "1")
        #expect(values["tlsgate_tls_handshakes_total{policy=\"web\",session=\"full\"}"] == "1")
        #expect(values["tlsgate_tls_handshakes_total{policy=\"web\",session=\"resumed\"}"] == "1")
        #expect(values["tlsgate_relayed_bytes_total{policy=\"web\",direction=\"up\"}"] == "160")
        #expect(values["tlsgate_relayed_bytes_total{policy=\"web\",direction=\"down\"}"] == "7")
        #expect(values["tlsgate_connections_active{policy=\"web\"}"] == "1.0")
        #expect(values["tlsgate_worker_restarts_total{policy=\"web\"}"] == "1")
    }

    @Test func histogramsKeepBucketsAndSumsExact() {
        let (metrics, registry) = make()
        // Three connects in bucket 2 (10 ms < d <= 25 ms) summing 50 ms + 1 ns, one in +Inf.
        let inf = WorkerStats.bucketBounds.count
        metrics.add(
            policy: "web",
            increments: ["connect.2.count": 3, "connect.2.ns": 50_000_001, "connect.\(inf).count": 1, "connect.\(inf).ns": 90_000_000_000])
        let values = exported(registry)
        let name = "tlsgate_upstream_connect_duration_seconds"
        #expect(values["\(name)_bucket{policy=\"web\",le=\"0.01\"}"] == "0")
        #expect(values["\(name)_bucket{policy=\"web\",le=\"0.025\"}"] == "3")
        #expect(values["\(name)_bucket{policy=\"web\",le=\"60.0\"}"] == "3")
        #expect(values["\(name)_bucket{policy=\"web\",le=\"+Inf\"}"] == "4")
        #expect(values["\(name)_count{policy=\"web\"}"] == "4")
        #expect(values["\(name)_sum{policy=\"web\"}"] == "90.050000001")
    }

    @Test func globalsAndRemovedPolicies() {
        let (metrics, registry) = make()
        metrics.setReady(policy: "web", true)
        metrics.setReady(policy: "old", false)
        metrics.rulesApplied(true)
        metrics.rulesApplied(false)
        metrics.dnsRefreshFailed()
        metrics.reloaded(live: true, accepted: true, at: 1000)
        metrics.reloaded(live: false, accepted: false, at: 2000)
        metrics.removePolicy("old")
        let values = exported(registry)
        #expect(values["tlsgate_worker_ready{policy=\"web\"}"] == "1.0")
        #expect(values["tlsgate_worker_ready{policy=\"old\"}"] == nil)
        #expect(values["tlsgate_rules_applied"] == "0.0")
        #expect(values["tlsgate_rules_apply_failures_total"] == "1")
        #expect(values["tlsgate_dns_refresh_failures_total"] == "1")
        #expect(values["tlsgate_config_reload_generation"] == "1.0")
        #expect(values["tlsgate_config_last_reload_successful"] == "0.0")
        #expect(values["tlsgate_config_last_reload_success_timestamp_seconds"] == "1000.0")
    }
}
