import Testing

@testable import TLSGateSupervisor

/// The refresh schedule on a mock clock (milliseconds): no resolver, no timer.
@Suite struct HostRefreshScheduleTests {
    var schedule = HostRefreshSchedule(minimum: 30_000, maximum: 3_600_000)

    @Test func ttlIsBoundedBelowAndAbove() {
        #expect(schedule.interval(ttl: 300) == 300_000)
        #expect(schedule.interval(ttl: 5) == 30_000)
        #expect(schedule.interval(ttl: 0) == 30_000)
        #expect(schedule.interval(ttl: 86_400) == 3_600_000)
        #expect(schedule.interval(ttl: nil) == 3_600_000)
        #expect(HostRefreshSchedule(minimum: 10, maximum: 5).maximum == 10)
    }

    @Test mutating func namesComeDueAtTheirOwnTTL() {
        schedule.resolved("a.test", addresses: ["198.19.0.41", "198.19.0.40"], ttl: 60, now: 1000)
        schedule.resolved("b.test", addresses: ["198.19.0.50"], ttl: nil, now: 1000)
        #expect(schedule.addresses(of: "a.test") == ["198.19.0.40", "198.19.0.41"])
        #expect(schedule.nextDeadline == 61_000)
        #expect(schedule.due(now: 60_999) == [])
        #expect(schedule.due(now: 61_000) == ["a.test"])
        let again = schedule.resolved("a.test", addresses: ["198.19.0.41", "198.19.0.40"], ttl: 60, now: 61_000)
        #expect(again.changed == false && again.recovered == false)
        let moved = schedule.resolved("a.test", addresses: ["198.19.0.42"], ttl: 60, now: 121_000)
        #expect(moved.changed)
        #expect(schedule.due(now: 3_601_000) == ["a.test", "b.test"])
    }

    @Test mutating func aFailingNameKeepsItsAddressesBacksOffAndIsNewsOnce() {
        schedule.resolved("a.test", addresses: ["198.19.0.40"], ttl: 60, now: 0)
        let first = schedule.failed("a.test", error: "SERVFAIL", now: 60_000)
        #expect(first)  // news: it was fine
        #expect(schedule.addresses(of: "a.test") == ["198.19.0.40"])
        #expect(schedule.nextDeadline == 90_000)  // min_refresh
        let second = schedule.failed("a.test", error: "timed out", now: 90_000)
        #expect(!second)  // still down: not news
        #expect(schedule.nextDeadline == 150_000)  // doubled
        for step in 0..<20 { _ = schedule.failed("a.test", error: "x", now: UInt64(step) * 1000) }
        #expect(schedule.entries["a.test"]!.due == 19_000 + 3_600_000)  // capped at max_refresh
        #expect(schedule.failures == 22)
        #expect(schedule.entries["a.test"]!.consecutiveFailures == 22)
        #expect(schedule.addresses(of: "a.test") == ["198.19.0.40"])
        let back = schedule.resolved("a.test", addresses: ["198.19.0.40"], ttl: 60, now: 4_000_000)
        #expect(back.recovered && !back.changed)
        #expect(schedule.entries["a.test"]!.error == nil && schedule.entries["a.test"]!.consecutiveFailures == 0)
        #expect(schedule.failures == 22)  // the counter never goes down
        let again = schedule.failed("a.test", error: "NXDOMAIN", now: 4_060_000)
        #expect(again)  // down again: news again
    }

    @Test mutating func aNameThatNeverResolvedHasNoAddressesAndUnusedNamesAreForgotten() {
        let news = schedule.failed("new.test", error: "NXDOMAIN", now: 0)
        #expect(news)
        #expect(schedule.addresses(of: "new.test") == [])
        schedule.resolved("old.test", addresses: ["198.19.0.40"], ttl: 60, now: 0)
        schedule.keep(only: ["old.test"])
        #expect(schedule.entries.keys.sorted() == ["old.test"])
        #expect(schedule.failures == 1)
    }
}
