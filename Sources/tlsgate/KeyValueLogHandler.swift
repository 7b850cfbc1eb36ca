import FoundationEssentials

#if canImport(Glibc)
import Glibc
#endif
import Logging

/// Writes one line per event to stderr: `text` is `TIME LEVEL message key=value …` with
/// the connection fields in a fixed order; `json` is one object per line. Field names and
/// JSON types are stable: see the README's "Logs" section.
///
/// Values can come from the network (a certificate's subject and SANs, a client's Host
/// header), so no byte of them may end a line or drive a terminal: `text` escapes every
/// control character (`\n`, `\r`, `\t`, `\x1b`, `\u{2028}` …, see `textEscape`) in the
/// message and in values; `json` escapes them as JSON does (`\n`, `\u001b`, …).
struct KeyValueLogHandler: LogHandler {
    enum Format: String, CaseIterable, Sendable {
        case text
        case json
    }

    /// Connection fields first, in this order; anything else follows, sorted.
    static let fieldOrder = [
        "policy", "client", "dst", "upstream", "sni", "tls_version", "cipher", "resumed", "alpn",
        "bytes_up", "bytes_down", "duration_ms", "result", "reason", "detail",
        "verify_error", "verify_code", "cert_subject", "cert_issuer", "cert_sans", "cert_not_after", "cert_sha256",
        "cert_spki_pin",
    ]
    private static let rank: [String: Int] = Dictionary(
        uniqueKeysWithValues: fieldOrder.enumerated().map { ($1, $0) })

    /// Fields written as JSON integers (when the value is one; anything else stays a string).
    static let integerFields: Set<String> = [
        "bytes_up", "bytes_down", "duration_ms", "verify_code", "pid", "uid", "signal", "listen_port", "match_port",
        "upstream_port", "open_connections", "cut_connections", "open_files_limit", "failed_accepts", "crashes",
        "restart_in_ms", "errors", "policies", "workers",
    ]
    /// Fields written as JSON booleans (when the value is `true` or `false`).
    static let booleanFields: Set<String> = ["resumed"]

    let format: Format
    var logLevel: Logger.Level
    var metadata: Logger.Metadata = [:]

    init(format: Format, level: Logger.Level) {
        self.format = format
        self.logLevel = level
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var line = render(
            time: Self.timestamp(), level: event.level, message: "\(event.message)", metadata: event.metadata ?? [:],
            base: metadata)
        line += "\n"
        StandardStream.error(line)
    }

    /// True when every byte is printable ASCII that no escape rule touches (`\\` and, with
    /// `forValue`, `"`, `=` and the space too): the common case, decided without Unicode
    /// property lookups. Anything else takes the scalar-by-scalar path.
    @inline(__always)
    static func isPlainASCII(_ text: String, forValue: Bool) -> Bool {
        var text = text
        return text.withUTF8 { bytes in
            for byte in bytes {
                if byte < 0x20 || byte > 0x7e || byte == 0x5c { return false }
                if forValue && (byte == 0x20 || byte == 0x22 || byte == 0x3d) { return false }
            }
            return true
        }
    }

    /// One log line, without its newline: the event's `metadata`, and the logger's `base`
    /// fields it does not set itself.
    func render(
        time: String, level: Logger.Level, message: String, metadata: Logger.Metadata, base: Logger.Metadata = [:]
    ) -> String {
        // A field of `fieldOrder` goes straight to its place (only its value is kept: the
        // key is the list's) and the others follow, sorted: a connection's line (every field
        // a known one) is written without merging two dictionaries or sorting its 15 fields.
        var known = [Logger.Metadata.Value?](repeating: nil, count: Self.fieldOrder.count)
        var others: [(key: String, value: Logger.Metadata.Value)] = []
        func place(_ key: String, _ value: Logger.Metadata.Value) {
            if let rank = Self.rank[key] { known[rank] = value } else { others.append((key, value)) }
        }
        for (key, value) in metadata { place(key, value) }
        for (key, value) in base where metadata[key] == nil { place(key, value) }
        if others.count > 1 { others.sort { $0.key < $1.key } }
        let order = Self.fieldOrder
        var line: String
        switch format {
        case .text:
            line = time
            line.reserveCapacity(64 + message.utf8.count + 40 * (metadata.count + base.count))
            line.append(" ")
            line.append(level.rawValue)  // the case's name, without reflection
            line.append(" ")
            line.append(Self.textEscape(message))
            for (rank, value) in known.enumerated() {
                guard let value else { continue }
                line.append(" ")
                line.append(order[rank])  // plain ASCII: nothing to escape
                line.append("=")
                line.append(Self.quoteIfNeeded(Self.text(of: value)))
            }
            for field in others {
                line.append(" ")
                line.append(Self.textEscape(field.key))
                line.append("=")
                line.append(Self.quoteIfNeeded(Self.text(of: field.value)))
            }
        case .json:
            line = "{\"ts\":\(Self.jsonString(time)),\"level\":\(Self.jsonString(level.rawValue)),\"msg\":\(Self.jsonString(message))"
            for (rank, value) in known.enumerated() {
                guard let value else { continue }
                let key = order[rank]
                line += ",\(Self.jsonString(key)):\(Self.jsonValue(key: key, value))"
            }
            for field in others {
                line += ",\(Self.jsonString(field.key)):\(Self.jsonValue(key: field.key, field.value))"
            }
            line += "}"
        }
        return line
    }

    /// A value's text (what `"\(value)"` gives), without interpolating a plain string.
    private static func text(of value: Logger.Metadata.Value) -> String {
        if case .string(let text) = value { return text }
        return "\(value)"
    }

    // MARK: text

    /// The escape for one character of a text line, or nil when it is written as is:
    /// `\n`, `\r`, `\t`; other C0 controls and DEL as `\xHH` (ESC is `\x1b`); C1 controls,
    /// the Unicode line and paragraph separators and the bidirectional controls as
    /// `\u{HHHH}`; and `\\` for a backslash, so an escape is never ambiguous.
    static func textEscape(_ scalar: Unicode.Scalar) -> String? {
        switch scalar.value {
        case 0x0a: return "\\n"
        case 0x0d: return "\\r"
        case 0x09: return "\\t"
        case 0x5c: return "\\\\"
        case 0x00..<0x20, 0x7f: return "\\x" + hex(scalar.value, digits: 2)
        case 0x80..<0xa0, 0x2028, 0x2029, 0x200e, 0x200f, 0x202a...0x202e, 0x2066...0x2069, 0xfeff:
            return "\\u{" + hex(scalar.value, digits: 4) + "}"
        default: return nil
        }
    }

    /// `text` with every control character escaped (see `textEscape(_:)`): a message.
    static func textEscape(_ text: String) -> String {
        if isPlainASCII(text, forValue: false) { return text }
        var out = ""
        for scalar in text.unicodeScalars {
            if let escape = textEscape(scalar) { out += escape } else { out.unicodeScalars.append(scalar) }
        }
        return out
    }

    /// A value as `key=value` writes it: bare when it is plain, otherwise in double quotes
    /// with `"` and `\` backslash-escaped and every control character escaped.
    static func quoteIfNeeded(_ value: String) -> String {
        if value.isEmpty { return "\"\"" }
        if isPlainASCII(value, forValue: true) { return value }
        // Not plain but all ASCII: a space, `"`, `=`, `\\` or a control character is in it, so
        // it is quoted without a Unicode property lookup. Other text is looked at scalar by
        // scalar (not by Character: "\r\n" is one Character that equals neither "\r" nor "\n").
        let ascii = value.utf8.allSatisfy { $0 < 0x80 }
        let needs = ascii || value.unicodeScalars.contains { scalar in
            scalar == "\"" || scalar == "=" || scalar.properties.isWhitespace || textEscape(scalar) != nil
        }
        guard needs else { return value }
        var out = "\""
        for scalar in value.unicodeScalars {
            if scalar == "\"" {
                out += "\\\""
            } else if let escape = textEscape(scalar) {
                out += escape
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }

    // MARK: JSON

    /// A metadata value as JSON: typed fields (`integerFields`, `booleanFields`) as
    /// numbers and booleans, arrays and dictionaries as such, everything else a string.
    static func jsonValue(key: String, _ value: Logger.Metadata.Value) -> String {
        switch value {
        case .array(let items):
            return "[" + items.map { jsonValue(key: "", $0) }.joined(separator: ",") + "]"
        case .dictionary(let entries):
            let body = entries.keys.sorted().map { "\(jsonString($0)):\(jsonValue(key: $0, entries[$0]!))" }
            return "{" + body.joined(separator: ",") + "}"
        case .string(let text):
            return typed(key: key, text) ?? jsonString(text)
        case .stringConvertible(let convertible):
            if let bool = convertible as? Bool { return bool ? "true" : "false" }
            if let int = convertible as? any BinaryInteger { return "\(int)" }
            let text = convertible.description
            return typed(key: key, text) ?? jsonString(text)
        }
    }

    private static func typed(key: String, _ text: String) -> String? {
        if integerFields.contains(key), let number = Int64(text) { return "\(number)" }
        if booleanFields.contains(key), text == "true" || text == "false" { return text }
        return nil
    }

    static func jsonString(_ value: String) -> String {
        var out = "\""
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                // Every other control character (and what `text` escapes) as \uXXXX.
                if scalar.value < 0x20 || textEscape(scalar) != nil {
                    out += "\\u" + hex(scalar.value, digits: 4)
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }

    private static func hex(_ value: UInt32, digits: Int) -> String {
        let text = String(value, radix: 16)
        return String(repeating: "0", count: max(0, digits - text.count)) + text
    }

    static func timestamp() -> String {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        var tm = tm()
        var seconds = ts.tv_sec
        gmtime_r(&seconds, &tm)
        // "2026-12-01T06:25:21.392Z", built by hand into the string's own storage:
        // String(format:) goes through Foundation formatting on every log line.
        return String(unsafeUninitializedCapacity: 24) { out in
            var at = 0
            func digits(_ value: Int, _ count: Int, then separator: UInt8) {
                var rest = value
                for i in stride(from: count - 1, through: 0, by: -1) {
                    out[at + i] = UInt8(truncatingIfNeeded: 0x30 + rest % 10)
                    rest /= 10
                }
                out[at + count] = separator
                at += count + 1
            }
            digits(Int(tm.tm_year) + 1900, 4, then: UInt8(ascii: "-"))
            digits(Int(tm.tm_mon) + 1, 2, then: UInt8(ascii: "-"))
            digits(Int(tm.tm_mday), 2, then: UInt8(ascii: "T"))
            digits(Int(tm.tm_hour), 2, then: UInt8(ascii: ":"))
            digits(Int(tm.tm_min), 2, then: UInt8(ascii: ":"))
            digits(Int(tm.tm_sec), 2, then: UInt8(ascii: "."))
            digits(Int(ts.tv_nsec) / 1_000_000, 3, then: UInt8(ascii: "Z"))
            return at
        }
    }
}
