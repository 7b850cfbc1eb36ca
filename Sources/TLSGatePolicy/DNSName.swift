/// Checks host names (RFC 1123 letters-digits-hyphens labels).
enum DNSName {
    /// Nil if `name` is a usable DNS name, else why not (`label "-a" starts with "-"`).
    /// A single trailing dot is accepted.
    static func problem(with name: String) -> String? {
        if name.isEmpty { return "it is empty" }
        if name.contains("*") { return "wildcards are not supported; list each name" }
        let body = name.hasSuffix(".") ? String(name.dropLast()) : name
        if body.utf8.count > 253 { return "it is longer than 253 characters" }
        let labels = body.split(separator: ".", omittingEmptySubsequences: false)
        for label in labels {
            if label.isEmpty { return "it has an empty label" }
            if label.utf8.count > 63 { return "label \(quoted(String(label))) is longer than 63 characters" }
            if let bad = label.unicodeScalars.first(where: { !isLabelChar($0) }) {
                return "character \(quoted(String(bad))) is not allowed (letters, digits, \"-\" and \".\" only)"
            }
            if label.hasPrefix("-") || label.hasSuffix("-") {
                return "label \(quoted(String(label))) starts or ends with \"-\""
            }
        }
        if let last = labels.last, last.allSatisfy({ $0.isASCII && $0.isNumber }) {
            return "the last label is all digits"
        }
        return nil
    }

    /// Lowercased, without a trailing dot.
    static func normalized(_ name: String) -> String {
        let lower = name.lowercased()
        return lower.hasSuffix(".") ? String(lower.dropLast()) : lower
    }

    private static func isLabelChar(_ char: Unicode.Scalar) -> Bool {
        switch char {
        case "a"..."z", "A"..."Z", "0"..."9", "-": return true
        default: return false
        }
    }
}
