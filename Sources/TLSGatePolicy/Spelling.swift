/// "Did you mean …?" for keys, tables and values: the known word nearest to a typo.
enum Spelling {
    /// The candidate within edit distance 2 of `word` (closest first, then list order).
    /// The comparison ignores the case of `word`.
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

    /// Like `closest`, but also takes an abbreviation: the only candidate that starts
    /// with `word` (at least 3 characters), e.g. `"warn"` → `"warning"`, `"crit"` → `"critical"`.
    static func suggestion(for word: String, among candidates: [String]) -> String? {
        if let match = closest(to: word, among: candidates) { return match }
        let lower = word.lowercased()
        guard lower.count >= 3 else { return nil }
        let prefixed = candidates.filter { $0.hasPrefix(lower) }
        return prefixed.count == 1 ? prefixed[0] : nil
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

    /// `"a"`, `"a" or "b"`, `"a", "b" or "c"`: the allowed values of a setting, quoted.
    static func alternatives(_ words: [String]) -> String {
        let quotedWords = words.map(quoted)
        guard quotedWords.count > 1 else { return quotedWords.first ?? "" }
        return quotedWords.dropLast().joined(separator: ", ") + " or " + quotedWords.last!
    }
}
