import Testing

@testable import TLSGatePolicy

@Suite struct TimeSpanTests {
    @Test(arguments: [
        ("250ms", Int64(250)), ("5s", 5000), ("5m", 300_000), ("1h", 3_600_000), ("1h30m", 5_400_000),
        ("1m30s", 90_000), ("1s500ms", 1500), ("0s", 0), ("2h0m5s", 7_205_000), ("90s", 90_000),
    ])
    func parses(text: String, milliseconds: Int64) {
        #expect(TimeSpan(text)?.milliseconds == milliseconds)
    }

    @Test(arguments: ["", "5", "s", "5 s", "-5s", "1.5s", "5sec", "30m1h", "1m1m", "5S", "ms", "1h 30m", "99999999999999h"])
    func rejects(text: String) {
        #expect(TimeSpan(text) == nil)
    }

    @Test func describesInFileSyntax() {
        #expect(TimeSpan(milliseconds: 5_400_000).description == "1h30m")
        #expect(TimeSpan(milliseconds: 250).description == "250ms")
        #expect(TimeSpan(milliseconds: 1500).description == "1s500ms")
        #expect(TimeSpan(milliseconds: 0).description == "0s")
        #expect(TimeSpan.minutes(5).description == "5m")
        #expect(TimeSpan("1m90s")?.description == "2m30s")
    }

    @Test func orders() {
        #expect(TimeSpan("100ms")! < TimeSpan("1s")!)
        #expect(UpstreamRule.connectTimeoutRange.contains(TimeSpan("5m")!))
        #expect(!UpstreamRule.connectTimeoutRange.contains(TimeSpan("5m1ms")!))
    }
}
