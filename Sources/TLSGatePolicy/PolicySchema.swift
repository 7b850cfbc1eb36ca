/// The tables and keys a policy file may contain, and the hints given for the rest.
enum PolicySchema {
    /// Known tables and their keys, in the order they are documented.
    static let tables: [(name: String, keys: [String])] = [
        ("match", ["networks", "hosts", "port"]),
        ("upstream", ["port", "server_name", "connect_timeout"]),
        ("tls", ["trust", "min_version", "max_version"]),
        ("limits", ["max_connections", "idle_timeout"]),
        ("firewall", ["deny_direct"]),
    ]

    static let tableNames = tables.map(\.name)

    static func keys(of table: String) -> [String] {
        tables.first { $0.name == table }?.keys ?? []
    }

    /// Keys from the design sketch that are not implemented yet.
    static let plannedKeys: [String: String] = [
        "alpn": "tls", "pins": "tls", "crl": "tls", "ocsp": "tls",
        "client_certificate": "tls", "client_key": "tls",
    ]

    static let verificationHint = "verification cannot be turned off; give the server's CA in trust = ..."

    /// Keys that look like an attempt to switch verification off.
    static func looksLikeVerificationSwitch(_ key: String) -> Bool {
        let lower = key.lowercased()
        return ["verif", "insecure", "skip", "no_check", "check_host", "allow_invalid", "accept_any", "unsafe"]
            .contains { lower.contains($0) }
    }

    /// The message for an unknown key in `table` (nil = at the top level).
    static func unknownKeyMessage(_ key: String, in table: String?) -> String {
        let base = "unknown key \(quoted(key))"
        if looksLikeVerificationSwitch(key) {
            return "\(base) (\(verificationHint))"
        }
        if let table, let match = closest(to: key, among: keys(of: table)) {
            return "\(base) (did you mean \(quoted(match))?)"
        }
        let owners = tables.filter { $0.keys.contains(key) }.map { "[\($0.name)]" }
        if !owners.isEmpty {
            let place = table.map { "in [\($0)]" } ?? "outside any table"
            return "\(base) \(place) (it belongs in \(owners.joined(separator: " or ")))"
        }
        if let planned = plannedKeys[key] {
            return "\(base) ([\(planned)] \(key) is not supported yet)"
        }
        if table == nil {
            return "\(base) outside any table (policy keys go in [match], [upstream], [tls], [limits] or [firewall])"
        }
        return base
    }

    /// The message for an unknown table, given as its dotted name.
    static func unknownTableMessage(_ name: String) -> String {
        let base = "unknown table [\(name)]"
        if looksLikeVerificationSwitch(name) {
            return "\(base) (\(verificationHint))"
        }
        if let match = closest(to: name, among: tableNames) {
            return "\(base) (did you mean [\(match)]?)"
        }
        return "\(base) (known tables: \(tableNames.map { "[\($0)]" }.joined(separator: ", ")))"
    }

    /// The candidate within edit distance 2 of `word` (closest first, then list order).
    static func closest(to word: String, among candidates: [String]) -> String? {
        var best: (candidate: String, distance: Int)?
        for candidate in candidates {
            let distance = editDistance(word.lowercased(), candidate)
            if distance <= 2, distance < (best?.distance ?? Int.max) {
                best = (candidate, distance)
            }
        }
        return best?.candidate
    }

    /// Levenshtein distance (insert, delete, substitute; each costs 1).
    static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a.unicodeScalars)
        let b = Array(b.unicodeScalars)
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        var previous = Array(0...b.count)
        var current = [Int](repeating: 0, count: b.count + 1)
        for i in 1...a.count {
            current[0] = i
            for j in 1...b.count {
                let substitution = previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)
                current[j] = min(previous[j] + 1, current[j - 1] + 1, substitution)
            }
            swap(&previous, &current)
        }
        return previous[b.count]
    }
}
