import Foundation
import Logging
import Testing

@testable import tlsgate

/// The log handler: one event is one line whatever its values hold (they can come from the
/// network), and JSON values are typed by field name.
@Suite struct KeyValueLogHandlerTests {
    let text = KeyValueLogHandler(format: .text, level: .info)
    let json = KeyValueLogHandler(format: .json, level: .info)
    let time = "2026-01-01T00:00:00.000Z"

    func textLine(_ metadata: Logger.Metadata, message: String = "m") -> String {
        text.render(time: time, level: .warning, message: message, metadata: metadata)
    }

    func jsonObject(_ metadata: Logger.Metadata, message: String = "m") throws -> [String: Any] {
        let line = json.render(time: time, level: .warning, message: message, metadata: metadata)
        #expect(!line.contains("\n") && !line.contains("\r") && !line.contains("\u{1b}"))
        return try #require(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
    }

    @Test func timestampIsISO8601UTCWithMilliseconds() throws {
        let stamp = KeyValueLogHandler.timestamp()
        #expect(stamp.utf8.count == 24)
        let shape = stamp.map { $0.isNumber ? "9" : String($0) }.joined()
        #expect(shape == "9999-99-99T99:99:99.999Z")
        #expect(stamp.hasPrefix("20"))
        // The digits are the time now, in order: parsed back, within two seconds of time().
        let fields = stamp.split(whereSeparator: { "-T:.Z".contains($0) }).compactMap { Int32($0) }
        try #require(fields.count == 7)
        var parts = tm()
        (parts.tm_year, parts.tm_mon, parts.tm_mday) = (fields[0] - 1900, fields[1] - 1, fields[2])
        (parts.tm_hour, parts.tm_min, parts.tm_sec) = (fields[3], fields[4], fields[5])
        #expect(abs(Int(timegm(&parts)) - Int(Glibc.time(nil))) <= 2)
    }

    @Test func plainValuesAndEscapesAgree() {
        // The ASCII fast paths and the scalar path give the same answers: every ASCII byte
        // inside a value, and non-ASCII text with and without Unicode whitespace.
        let everyASCII = (0..<0x80).map { "a" + String(UnicodeScalar(UInt8($0))) + "b" }
        let others = ["a", "a b", "a=b", "a\"b", "a\\b", "ok-1.2:3/4", "é", "a\u{7f}", "~!@#$%^&*()", "a\u{a0}b", "a\u{3000}b", "é b"]
        for value in everyASCII + others {
            let slow = value.unicodeScalars.contains { scalar in
                scalar == "\"" || scalar == "=" || scalar.properties.isWhitespace
                    || KeyValueLogHandler.textEscape(scalar) != nil
            }
            #expect((KeyValueLogHandler.quoteIfNeeded(value) != value) == slow, "\(value)")
        }
        #expect(KeyValueLogHandler.textEscape("plain text") == "plain text")
        #expect(KeyValueLogHandler.textEscape("back\\slash") == "back\\\\slash")
    }

    @Test func textValueWithCRLFStaysOnOneLine() {
        // "\r\n" is a single Character in Swift: it must still be escaped.
        let line = textLine(["cert_sans": "DNS:evil.test\r\n2026-01-01T00:00:00.000Z info connection closed result=ok"])
        #expect(!line.contains("\n") && !line.contains("\r"))
        #expect(line == "\(time) warning m cert_sans=\"DNS:evil.test\\r\\n2026-01-01T00:00:00.000Z info connection closed result=ok\"")
    }

    @Test func textEscapesEveryControlCharacter() {
        #expect(KeyValueLogHandler.quoteIfNeeded("a\u{1b}[31mb") == "\"a\\x1b[31mb\"")
        #expect(KeyValueLogHandler.quoteIfNeeded("a\rb") == "\"a\\rb\"")
        #expect(KeyValueLogHandler.quoteIfNeeded("a\nb") == "\"a\\nb\"")
        #expect(KeyValueLogHandler.quoteIfNeeded("a\tb") == "\"a\\tb\"")
        #expect(KeyValueLogHandler.quoteIfNeeded("a\u{0}b\u{7f}") == "\"a\\x00b\\x7f\"")
        #expect(KeyValueLogHandler.quoteIfNeeded("a\u{85}b\u{2028}c\u{202e}") == "\"a\\u{0085}b\\u{2028}c\\u{202e}\"")
        #expect(KeyValueLogHandler.quoteIfNeeded("back\\slash") == "\"back\\\\slash\"")
        #expect(KeyValueLogHandler.quoteIfNeeded("say \"hi\"") == "\"say \\\"hi\\\"\"")
        #expect(KeyValueLogHandler.quoteIfNeeded("plain-value:1") == "plain-value:1")
        #expect(KeyValueLogHandler.quoteIfNeeded("") == "\"\"")
        // Combining marks on a quote or a backslash do not hide them (scalars, not Characters).
        #expect(KeyValueLogHandler.quoteIfNeeded("x\"\u{301}") == "\"x\\\"\u{301}\"")
        // Every C0 control, DEL and C1 control is escaped.
        for value in Array(0x00...0x1f) + [0x7f] + Array(0x80...0x9f) {
            let raw = String(Unicode.Scalar(UInt8(value)))
            let quoted = KeyValueLogHandler.quoteIfNeeded("a\(raw)b")
            #expect(!quoted.unicodeScalars.contains(Unicode.Scalar(UInt8(value))), "U+\(String(value, radix: 16))")
        }
    }

    @Test func textMessageIsEscapedToo() {
        let line = textLine([:], message: "bad request: Host \"a\r\nb\u{1b}c\"")
        #expect(line == "\(time) warning bad request: Host \"a\\r\\nb\\x1bc\"")
    }

    @Test func jsonEscapesControlCharactersAndParses() throws {
        let object = try jsonObject(["detail": "Host \"a\r\n\u{1b}[2J\"", "cert_sans": "DNS:a\u{2028}b"], message: "x\r\ny")
        #expect(object["msg"] as? String == "x\r\ny")
        #expect(object["detail"] as? String == "Host \"a\r\n\u{1b}[2J\"")
        #expect(object["cert_sans"] as? String == "DNS:a\u{2028}b")
        let line = json.render(time: time, level: .info, message: "m", metadata: ["detail": "\u{1b}\u{7f}"])
        #expect(line.contains("\"detail\":\"\\u001b\\u007f\""))
    }

    @Test func jsonTypesIntegersAndBooleans() throws {
        let object = try jsonObject([
            "resumed": "false", "bytes_up": "25", "bytes_down": "0", "duration_ms": "12", "pid": "4242",
            "verify_code": "10", "policy": "api", "alpn": "-", "listen_port": "41000",
        ])
        #expect(object["resumed"] as? Bool == false)
        #expect((object["bytes_up"] as? NSNumber)?.intValue == 25)
        #expect((object["bytes_down"] as? NSNumber)?.intValue == 0)
        #expect((object["duration_ms"] as? NSNumber)?.intValue == 12)
        #expect((object["pid"] as? NSNumber)?.intValue == 4242)
        #expect((object["verify_code"] as? NSNumber)?.intValue == 10)
        #expect((object["listen_port"] as? NSNumber)?.intValue == 41000)
        #expect(object["policy"] as? String == "api")
        #expect(object["alpn"] as? String == "-")
        let line = json.render(time: time, level: .info, message: "m", metadata: ["resumed": "true", "bytes_up": "7"])
        #expect(line.hasSuffix(",\"resumed\":true,\"bytes_up\":7}"))
    }

    @Test func jsonKeepsNonNumbersInIntegerFieldsAsStrings() throws {
        let object = try jsonObject(["bytes_up": "?", "resumed": "maybe"])
        #expect(object["bytes_up"] as? String == "?")
        #expect(object["resumed"] as? String == "maybe")
    }

    @Test func fieldOrderIsTheREADMEOrder() {
        let line = textLine([
            "reason": "completed", "alpn": "-", "policy": "p", "resumed": "false", "zzz": "1", "bytes_up": "1", "aaa": "2",
        ])
        #expect(line == "\(time) warning m policy=p resumed=false alpn=- bytes_up=1 reason=completed aaa=2 zzz=1")
    }

    /// The logger's own fields (a worker's `policy`) join the event's, in their places; the
    /// event's value wins where both set a field.
    @Test func loggerFieldsJoinTheEventsInOrder() {
        let base: Logger.Metadata = ["policy": "web", "pid": "7", "result": "base"]
        let line = text.render(
            time: time, level: .info, message: "m", metadata: ["result": "ok", "client": "c", "aaa": "1"], base: base)
        #expect(line == "\(time) info m policy=web client=c result=ok aaa=1 pid=7")
        let object = json.render(time: time, level: .info, message: "m", metadata: [:], base: base)
        #expect(object == "{\"ts\":\"\(time)\",\"level\":\"info\",\"msg\":\"m\",\"policy\":\"web\",\"result\":\"base\",\"pid\":7}")
    }
}
