import Foundation
import Testing

@testable import TLSGatePolicy

/// Hostile or mistaken inputs: bounded depth and size, linear time, no blocking on FIFOs.
@Suite struct TOMLReaderLimitsTests {
    @Test func sixtyThousandNestedBracketsAreAnErrorNotACrash() {
        let text = "a = " + String(repeating: "[", count: 60_000) + "\n"
        let result = TOMLReader.read(text)
        #expect(result.errors.map(\.description) == ["1: arrays nested more than 32 deep"])
    }

    @Test func nestingUpToTheBoundIsRead() {
        let depth = TOMLReader.maximumDepth
        let text = "a = " + String(repeating: "[", count: depth) + "1" + String(repeating: "]", count: depth) + "\n"
        #expect(TOMLReader.read(text).errors == [])
    }

    @Test func fiftyThousandDottedLabelsAreAnErrorNotACrash() {
        let text = "x = 1\n[" + Array(repeating: "a", count: 50_000).joined(separator: ".") + "]\nk = 1\n"
        let result = TOMLReader.read(text)
        #expect(result.errors.first?.line == 2)
        #expect(result.errors.first?.message == "table header with more than 32 dotted labels")
    }

    @Test func twentyThousandKeysReadInLinearTime() {
        func document(_ n: Int) -> String {
            var text = "[tls]\n"
            for i in 0..<n { text += "key\(i) = \(i)\n" }
            return text
        }
        let small = document(2_000)
        let large = document(20_000)
        let clock = ContinuousClock()
        _ = TOMLReader.read(small)
        let tSmall = clock.measure { #expect(TOMLReader.read(small).errors == []) }
        let tLarge = clock.measure {
            let result = TOMLReader.read(large)
            #expect(result.errors == [])
            #expect(result.table.table("tls")?["key19999"]?.line == 20_001)
        }
        // Ten times the keys: linear is ~10x; quadratic was ~100x (3.8 s in a debug build).
        // The ratio is what tells them apart; no absolute bound (a speed target, not a test:
        // under ThreadSanitizer, Scripts/sanitize.sh, 20,000 keys take ~3 s while linear).
        #expect(tLarge < tSmall * 40 + .milliseconds(200), "small \(tSmall), large \(tLarge)")
    }

    @Test func tooManyKeysIsOneErrorWithItsLine() {
        var text = "[t]\n"
        for i in 0..<(TOMLReader.maximumKeys + 10) { text += "k\(i)=1\n" }
        let result = TOMLReader.read(text)
        #expect(result.errors.count == 1)
        #expect(result.errors.first?.line == TOMLReader.maximumKeys + 1)
        #expect(result.errors.first?.message.hasPrefix("more than 100000 keys") == true)
    }

    @Test func manyTablesStayLinear() {
        var text = ""
        for i in 0..<5_000 { text += "[t\(i % 50).s\(i)]\nk = 1\n" }
        let clock = ContinuousClock()
        let elapsed = clock.measure { #expect(TOMLReader.read(text).errors == []) }
        #expect(elapsed < .seconds(3), "5,000 nested tables took \(elapsed)")
    }

    @Test func aFIFONamedTomlIsRefusedWithoutHanging() throws {
        let folder = try Fixtures.makeTemporaryDirectory()
        defer { Fixtures.remove(folder) }
        #expect(mkfifo(folder + "/web.toml", 0o644) == 0)
        let result = PolicyLoader.loadDirectory(folder)
        #expect(result.diagnostics.map(\.description) == ["\(folder)/web.toml: cannot read: is a FIFO, not a regular file"])
    }

    @Test func aFIFOAsCAFileIsRefusedWithoutHangingOnItsLine() throws {
        let folder = try Fixtures.folder([
            "web.toml": """
                [match]
                networks = ["198.19.0.10/32"]
                port = 80

                [upstream]
                port = 443
                server_name = "good.test"

                [tls]
                trust = "ca.pem"
                """
        ])
        defer { Fixtures.remove(folder) }
        #expect(mkfifo(folder + "/ca.pem", 0o644) == 0)
        let (policy, diagnostics) = PolicyLoader.loadFile(folder + "/web.toml")
        #expect(policy == nil)
        #expect(
            diagnostics.map(\.description).contains(
                "\(folder)/web.toml:10: trust: cannot read CA file \"\(folder)/ca.pem\": is a FIFO, not a regular file"),
            "\(diagnostics)")
    }

    @Test func aDeviceIsRefused() {
        #expect(throws: TextFile.ReadError.self) { try TextFile.readText("/dev/zero", limit: 1 << 20) }
    }
}
