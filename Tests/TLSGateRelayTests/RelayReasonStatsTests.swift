import TLSGatePolicy
import Testing

@testable import TLSGateRelay

/// The metrics' reason labels (`WorkerStats.reasons`) are exactly the log's reason words.
@Suite struct RelayReasonStatsTests {
    @Test func everyReasonIsAStatsKeyWithItsResult() {
        #expect(RelayReason.all.count == WorkerStats.reasons.count)
        for reason in RelayReason.all {
            #expect(WorkerStats.reasons["\(reason)"] == reason.result, "\(reason)")
            #expect(WorkerStats.keys.contains("closed.\(reason)"))
        }
    }

    @Test func everyHistogramBucketAndReasonKeyIsAStatsKey() {
        // The keys built once at start-up are the ones the supervisor accepts.
        for histogram in WorkerStats.histograms {
            for (index, bound) in (WorkerStats.bucketBounds + [UInt64.max]).enumerated() {
                let stats = ConnectionStats()
                stats.observe(histogram, nanoseconds: Int64(clamping: bound))
                #expect(stats.changes() == ["active": 0, "\(histogram).\(index).count": 1, "\(histogram).\(index).ns": min(bound, UInt64(Int64.max))])
            }
        }
        for reason in RelayReason.all {
            let stats = ConnectionStats()
            stats.closed(reason: reason, bytesUp: 0, bytesDown: 0, nanoseconds: 0)
            #expect(stats.changes()["closed.\(reason)"] == 1, "\(reason)")
        }
    }

    @Test func quietOnceAfterEachSpellOfActivity() {
        let stats = ConnectionStats()
        #expect(!stats.quietAfterActivity())  // nothing ever happened: nothing to give back
        stats.accepted()
        #expect(!stats.quietAfterActivity())  // a connection came in this interval
        #expect(stats.quietAfterActivity())  // an interval without: once
        #expect(!stats.quietAfterActivity())
        stats.closed(reason: .completed, bytesUp: 1, bytesDown: 1, nanoseconds: 1)
        #expect(!stats.quietAfterActivity())  // a close is activity too
        #expect(stats.quietAfterActivity())
        stats.accepted()
        #expect(!stats.quietAfterActivity())
        stats.accepted()
        #expect(!stats.quietAfterActivity())  // traffic in every interval: never
        #expect(stats.quietAfterActivity())
    }

    @Test func connectionStatsReportOnlyChanges() {
        let stats = ConnectionStats()
        stats.accepted()
        stats.observe("connect", nanoseconds: 12_000_000)
        stats.handshake(resumed: true, nanoseconds: 3_000_000)
        #expect(
            stats.changes() == [
                "accepted": 1, "active": 1, "connect.2.count": 1, "connect.2.ns": 12_000_000, "handshakes.resumed": 1,
                "handshake.0.count": 1, "handshake.0.ns": 3_000_000,
            ])
        #expect(stats.changes() == [:])
        stats.closed(reason: .tlsVerifyFailed, bytesUp: 10, bytesDown: 0, nanoseconds: 70_000_000_000)
        #expect(
            stats.changes() == [
                "active": 0, "closed.tls_verify_failed": 1, "bytes.up": 10, "duration.12.count": 1, "duration.12.ns": 70_000_000_000,
            ])
    }
}
