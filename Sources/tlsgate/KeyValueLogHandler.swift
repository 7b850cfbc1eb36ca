import Foundation
import Logging

/// Writes one line per event to stderr: `text` is `TIME LEVEL message key=value …` with
/// the connection fields in a fixed order; `json` is one object per line. Field names are
/// stable: see the README's "Logs" section.
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
        var merged = metadata
        if let extra = event.metadata { merged.merge(extra) { _, new in new } }
        let keys = merged.keys.sorted { a, b in
            let ra = Self.rank[a] ?? Int.max
            let rb = Self.rank[b] ?? Int.max
            return ra == rb ? a < b : ra < rb
        }
        let time = Self.timestamp()
        var line: String
        switch format {
        case .text:
            line = "\(time) \(event.level) \(event.message)"
            for key in keys {
                line += " \(key)=\(Self.quoteIfNeeded("\(merged[key]!)"))"
            }
        case .json:
            line = "{\"ts\":\(Self.jsonString(time)),\"level\":\(Self.jsonString("\(event.level)")),\"msg\":\(Self.jsonString("\(event.message)"))"
            for key in keys {
                line += ",\(Self.jsonString(key)):\(Self.jsonString("\(merged[key]!)"))"
            }
            line += "}"
        }
        line += "\n"
        FileHandle.standardError.write(Data(line.utf8))
    }

    static func quoteIfNeeded(_ value: String) -> String {
        if value.isEmpty { return "\"\"" }
        let needs = value.contains { $0 == " " || $0 == "\"" || $0 == "=" || $0 == "\\" || $0.isNewline }
        guard needs else { return value }
        var out = "\""
        for ch in value {
            switch ch {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            default: out.append(ch)
            }
        }
        return out + "\""
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
                if scalar.value < 0x20 {
                    out += String(format: "\\u%04x", scalar.value)
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }

    static func timestamp() -> String {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        var tm = tm()
        var seconds = ts.tv_sec
        gmtime_r(&seconds, &tm)
        return String(
            format: "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
            tm.tm_min, tm.tm_sec, ts.tv_nsec / 1_000_000)
    }
}

