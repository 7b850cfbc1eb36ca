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

/// The supervisor's lines to a worker (`SupervisorMessage`): what the worker accepts.
@Suite struct SupervisorMessageTests {
    @Test func linesRoundTrip() {
        #expect(SupervisorMessage.accept.line == WorkerReport.acceptLine)
        #expect(SupervisorMessage.parse(SupervisorMessage.accept.line) == .message(.accept, consumed: 7))
        let networks = [IPNetwork("198.19.0.0/24")!, IPNetwork("198.19.0.40")!, IPNetwork("2001:2:0:1::40")!]
        let line = SupervisorMessage.destinations(networks).line
        #expect(String(decoding: line, as: UTF8.self) == "destinations 198.19.0.0/24 198.19.0.40/32 2001:2:0:1::40/128\n")
        #expect(SupervisorMessage.parse(line) == .message(.destinations(networks), consumed: line.count))
        #expect(SupervisorMessage.parse(Array("destinations\n".utf8)) == .message(.destinations([]), consumed: 13))
        #expect(SupervisorMessage.parse(Array("destinations 198.19".utf8)) == .incomplete)
    }

    @Test func anythingElseIsRefusedAndSkipped() {
        for text in [
            "accept now\n", "ACCEPT\n", "destinations 198.19.0.40\n", "destinations 198.19.0.1/24\n",
            "destinations  198.19.0.0/24\n", "destinations 198.19.0.0/24 \n", "destinations 0198.19.0.0/24\n",
            "destinations 198.19.0.0/24\r\n", "exec /bin/sh\n", "\u{1b}accept\n",
        ] {
            guard case .invalid(_, let consumed) = SupervisorMessage.parse(Array(text.utf8)) else {
                Issue.record("\(text.debugDescription) accepted")
                continue
            }
            #expect(consumed == text.utf8.count)
        }
        let tooMany = "destinations" + String(repeating: " 198.19.0.40/32", count: SupervisorMessage.maximumNetworks + 1) + "\n"
        guard case .invalid = SupervisorMessage.parse(Array(tooMany.utf8)) else {
            Issue.record("too many destinations accepted")
            return
        }
        let endless = [UInt8](repeating: 0x61, count: SupervisorMessage.maximumLength)
        guard case .invalid(_, let consumed) = SupervisorMessage.parse(endless) else {
            Issue.record("an endless line accepted")
            return
        }
        #expect(consumed == endless.count)
    }
}
