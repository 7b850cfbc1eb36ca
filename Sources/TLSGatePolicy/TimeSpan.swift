/// A duration in whole milliseconds, written in files as `"250ms"`, `"5s"`, `"5m"`, `"1h"`,
/// `"1h30m"`: one or more number+unit parts, units `h`, `m`, `s`, `ms` from largest to
/// smallest, each at most once, no spaces, no sign.
public struct TimeSpan: Sendable, Hashable, Comparable, Codable, CustomStringConvertible {
    public let milliseconds: Int64

    public init(milliseconds: Int64) {
        self.milliseconds = milliseconds
    }

    public static func seconds(_ value: Int64) -> TimeSpan { TimeSpan(milliseconds: value * 1000) }
    public static func minutes(_ value: Int64) -> TimeSpan { TimeSpan(milliseconds: value * 60_000) }
    public static func hours(_ value: Int64) -> TimeSpan { TimeSpan(milliseconds: value * 3_600_000) }

    /// Parses `"1h30m"`, `"250ms"`…; nil for anything else (including a bare number).
    public init?(_ text: String) {
        let units: [(name: String, factor: Int64)] = [("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)]
        var chars = Substring(text)
        var total: Int64 = 0
        var nextUnit = 0  // units must come in order, each at most once
        guard !chars.isEmpty else { return nil }
        while !chars.isEmpty {
            let digits = chars.prefix { $0.isASCII && $0.isNumber }
            guard !digits.isEmpty, digits.count <= 12, let number = Int64(digits) else { return nil }
            chars = chars.dropFirst(digits.count)
            let unitText = chars.prefix { $0.isASCII && $0.isLetter }
            chars = chars.dropFirst(unitText.count)
            guard let unitIndex = units.firstIndex(where: { $0.name == unitText }), unitIndex >= nextUnit else {
                return nil
            }
            nextUnit = unitIndex + 1
            let (part, overflow1) = number.multipliedReportingOverflow(by: units[unitIndex].factor)
            let (sum, overflow2) = total.addingReportingOverflow(part)
            guard !overflow1, !overflow2 else { return nil }
            total = sum
        }
        milliseconds = total
    }

    /// The shortest form in the file syntax: `"1h30m"`, `"250ms"`, `"1s500ms"`, `"0s"`.
    public var description: String {
        if milliseconds == 0 { return "0s" }
        if milliseconds < 0 { return "-" + TimeSpan(milliseconds: milliseconds == .min ? .max : -milliseconds).description }
        var rest = milliseconds
        var text = ""
        for (name, factor) in [("h", Int64(3_600_000)), ("m", 60_000), ("s", 1000), ("ms", 1)] {
            let count = rest / factor
            if count > 0 {
                text += "\(count)\(name)"
                rest -= count * factor
            }
        }
        return text
    }

    public static func < (lhs: TimeSpan, rhs: TimeSpan) -> Bool {
        lhs.milliseconds < rhs.milliseconds
    }
}
