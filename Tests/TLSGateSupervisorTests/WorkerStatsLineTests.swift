import Testing

@testable import TLSGatePolicy

/// `stats` lines: the fixed key set, decimal values, bounded length and pair count.
@Suite struct WorkerStatsLineTests {
    private func parse(_ text: String) -> WorkerReport.Parsed { WorkerReport.parse(Array((text + "\n").utf8)) }

    @Test func roundTrip() {
        let values: [String: UInt64] = ["accepted": 3, "active": 1, "closed.completed": 2, "connect.2.count": 2, "connect.2.ns": 31_000_000]
        let reports = WorkerStats.reports(values)
        #expect(reports == [.stats(values)])
        let line = reports[0].line
        #expect(String(decoding: line, as: UTF8.self) == "stats accepted=3 active=1 closed.completed=2 connect.2.count=2 connect.2.ns=31000000\n")
        #expect(WorkerReport.parse(line) == .report(.stats(values), consumed: line.count))
    }

    @Test func everyKeyFitsAndBucketPairsStayTogether() {
        // The largest possible report: every key at the largest value.
        let all = Dictionary(uniqueKeysWithValues: WorkerStats.keys.map { ($0, UInt64.max) })
        let reports = WorkerStats.reports(all)
        var seen: [String: UInt64] = [:]
        for report in reports {
            let line = report.line
            #expect(line.count <= WorkerReport.maximumLength)
            guard case .report(.stats(let values), _) = WorkerReport.parse(line) else {
                Issue.record("not parsed back: \(String(decoding: line, as: UTF8.self))")
                continue
            }
            for key in values.keys where key.hasSuffix(".count") {
                #expect(values[String(key.dropLast(6)) + ".ns"] != nil, "\(key) without its sum on the same line")
            }
            seen.merge(values) { a, _ in a }
        }
        #expect(seen == all)
        #expect(WorkerStats.reports([:]).isEmpty)
    }

    @Test func refusesWhatIsNotOnTheList() {
        let bad = [
            "stats", "stats ", "stats accepted", "stats accepted=", "stats accepted=-1", "stats accepted=1x",
            "stats accepted=+1", "stats accepted=18446744073709551616", "stats accepted=1 accepted=2",
            "stats evil=1", "stats closed.made_up=1", "stats connect.13.count=1", "stats accepted=1  active=1",
            "stats accepted=1 ", "statsaccepted=1",
        ]
        for text in bad {
            guard case .invalid = parse(text) else {
                Issue.record("accepted: \(text)")
                continue
            }
        }
        // Longer than a line may be: refused before any parsing.
        let long = "stats " + String(repeating: "accepted=1 ", count: 30)
        guard case .invalid = WorkerReport.parse(Array(long.utf8)) else {
            Issue.record("an over-long line was not refused")
            return
        }
        #expect(parse("stats accepted=18446744073709551615") == .report(.stats(["accepted": .max]), consumed: 36))
    }

    @Test func bucketsFollowPrometheusLe() {
        #expect(WorkerStats.bucket(nanoseconds: 0) == 0)
        #expect(WorkerStats.bucket(nanoseconds: 5_000_000) == 0)
        #expect(WorkerStats.bucket(nanoseconds: 5_000_001) == 1)
        #expect(WorkerStats.bucket(nanoseconds: 60_000_000_000) == WorkerStats.bucketBounds.count - 1)
        #expect(WorkerStats.bucket(nanoseconds: 60_000_000_001) == WorkerStats.bucketBounds.count)
    }
}
