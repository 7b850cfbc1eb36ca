import Testing
import TLSGatePolicy

@Suite struct WorkerReportTests {
    @Test func allowedLinesRoundTrip() {
        #expect(WorkerReport.parse(WorkerReport.ready.line) == .report(.ready, consumed: 6))
        #expect(WorkerReport.parse(WorkerReport.draining.line) == .report(.draining, consumed: 9))
        let failed = WorkerReport.failed("cannot load \u{7}CA\n").line
        #expect(WorkerReport.parse(failed) == .report(.failed("cannot load ?CA?"), consumed: failed.count))
    }

    @Test func partialLinesWait() {
        #expect(WorkerReport.parse(Array("rea".utf8)) == .incomplete)
        #expect(WorkerReport.parse([]) == .incomplete)
    }

    @Test func twoLinesInOneRead() {
        let bytes = WorkerReport.failed("x").line + WorkerReport.ready.line
        guard case .report(.failed("x"), let consumed) = WorkerReport.parse(bytes) else {
            Issue.record("first line not parsed")
            return
        }
        #expect(WorkerReport.parse(Array(bytes[consumed...])) == .report(.ready, consumed: 6))
    }

    @Test func anythingElseIsRefused() {
        for text in ["READY\n", "ready \n", "failed \n", "shell rm -rf /\n", "ready\r\n", "\u{0}ready\n"] {
            guard case .invalid = WorkerReport.parse(Array(text.utf8)) else {
                Issue.record("\(text.debugDescription) accepted")
                continue
            }
        }
        let long = [UInt8](repeating: UInt8(ascii: "a"), count: WorkerReport.maximumLength)
        guard case .invalid = WorkerReport.parse(long) else {
            Issue.record("an endless line is not refused")
            return
        }
        let longReason = Array("failed ".utf8) + [UInt8](repeating: UInt8(ascii: "a"), count: 201) + [0x0a]
        guard case .invalid = WorkerReport.parse(longReason) else {
            Issue.record("an over-long reason is accepted")
            return
        }
    }
}
