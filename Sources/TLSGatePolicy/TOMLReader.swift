/// A small TOML reader for policy and config files that keeps line numbers.
///
/// Supported: `#` comments, `[table]` and `[a.b]` headers, bare and quoted keys,
/// `key = value` where the value is a basic string `"..."` (escapes `\" \\ \b \t \n \f \r
/// \uXXXX \UXXXXXXXX`), a literal string `'...'`, an integer (decimal, or `0x1F`, `0o17`,
/// `0b101`; optional `_` between digits), a boolean, or an array of those (which may span
/// lines, with comments and a trailing comma).
///
/// Anything else is rejected with a message rather than mis-read: floats, dates and times,
/// inline tables, arrays of tables, multi-line strings, dotted keys.
///
/// The reader does not stop at the first error: after an error it skips to the next line
/// and goes on, so one run reports every broken line. An error inside a multi-line array
/// ends the reading (what follows cannot be understood reliably).
public struct TOMLReader {
    /// What reading a document gives: the root table (holding whatever could be read)
    /// and the syntax errors in file order. The table is only trustworthy when there
    /// are no errors.
    public struct Result: Sendable, Equatable {
        public let table: TOMLTable
        public let errors: [TOMLSyntaxError]
    }

    /// Reads `text` as a TOML document.
    public static func read(_ text: String) -> Result {
        var reader = TOMLReader(text)
        reader.readDocument()
        return Result(table: reader.root, errors: reader.errors)
    }

    // MARK: - State

    private let chars: [Unicode.Scalar]
    private var position = 0
    private var line = 1
    private var root = TOMLTable(line: 1, isExplicit: true)
    /// The path of the table that `key = value` lines go into; nil after a bad header
    /// (its keys are then read but dropped, so they do not cause follow-on errors).
    private var currentPath: [String]? = []
    private var errors: [TOMLSyntaxError] = []
    private var arrayDepth = 0
    /// Keys and table headers read so far.
    private var keyCount = 0

    /// The most labels in a `[a.b.c]` header and the deepest nesting of arrays: a policy
    /// needs 2 and 1; the bound keeps a hostile file from exhausting the stack.
    public static let maximumDepth = 32
    /// The most keys and table headers in one document.
    public static let maximumKeys = 100_000

    private init(_ text: String) {
        chars = Array(text.unicodeScalars)
    }

    private struct Failure: Error {
        let line: Int
        let message: String
    }

    // MARK: - Document and lines

    private mutating func readDocument() {
        if chars.first == "\u{FEFF}" { position = 1 }
        while position < chars.count {
            do {
                try readLine()
            } catch {
                errors.append(TOMLSyntaxError(line: error.line, message: error.message))
                if arrayDepth > 0 { return }
                skipRestOfLine()
            }
        }
    }

    private mutating func readLine() throws(Failure) {
        skipSpaces()
        guard let char = peek() else { return }
        switch char {
        case "\n", "\r", "#":
            try endOfLine()
        case "[":
            try readHeader()
        case "=":
            throw Failure(line: line, message: "missing key before \"=\"")
        default:
            try readKeyValue()
        }
    }

    /// Expects optional spaces and a comment, then a newline or the end of the text.
    private mutating func endOfLine(after what: String = "value") throws(Failure) {
        skipSpaces()
        if peek() == "#" {
            while let char = peek(), char != "\n", char != "\r" { position += 1 }
        }
        guard let char = peek() else { return }
        if char == "\n" {
            position += 1
            line += 1
        } else if char == "\r", peek(1) == "\n" {
            position += 2
            line += 1
        } else {
            throw Failure(line: line, message: "unexpected text after \(what): \(quoted(restOfLine()))")
        }
    }

    private mutating func skipRestOfLine() {
        while let char = peek() {
            position += 1
            if char == "\n" {
                line += 1
                return
            }
        }
    }

    private func restOfLine() -> String {
        var text = ""
        var index = position
        while index < chars.count, chars[index] != "\n", chars[index] != "\r" {
            text.unicodeScalars.append(chars[index])
            index += 1
        }
        return text
    }

    // MARK: - Headers

    private mutating func readHeader() throws(Failure) {
        let headerLine = line
        position += 1  // [
        if peek() == "[" {
            throw Failure(line: line, message: "arrays of tables ([[...]]) are not supported here")
        }
        var path: [String] = []
        while true {
            skipSpaces()
            if peek() == "]" && path.isEmpty {
                throw Failure(line: line, message: "empty table name in header")
            }
            path.append(try readKey())
            if path.count > Self.maximumDepth {
                throw Failure(line: line, message: "table header with more than \(Self.maximumDepth) dotted labels")
            }
            skipSpaces()
            if peek() == "." {
                position += 1
                continue
            }
            if peek() == "]" {
                position += 1
                break
            }
            throw Failure(line: line, message: "expected \"]\" to end the table header")
        }
        try countKey()
        try endOfLine(after: "table header")
        defineTable(path, line: headerLine)
    }

    private mutating func defineTable(_ path: [String], line headerLine: Int) {
        var problem: String?
        Self.define(path[...], in: &root, line: headerLine, fullPath: path, problem: &problem)
        if let problem {
            errors.append(TOMLSyntaxError(line: headerLine, message: problem))
            currentPath = nil
        } else {
            currentPath = path
        }
    }

    private static func define(
        _ path: ArraySlice<String>, in table: inout TOMLTable, line: Int,
        fullPath: [String], problem: inout String?
    ) {
        let key = path.first!
        let isLast = path.count == 1
        if let index = table.index(of: key) {
            let entry = table.entries[index]
            guard case .table = entry.item, var child = table.takeTable(at: index) else {
                problem = "\(headerName(fullPath)) conflicts with key \(quoted(key)) set on line \(entry.line)"
                return
            }
            defer { table.replaceItem(at: index, with: .table(child)) }
            if isLast {
                if child.isExplicit {
                    problem = "duplicate table \(headerName(fullPath)) (first defined on line \(child.line))"
                } else {
                    child.isExplicit = true
                }
                return
            }
            define(path.dropFirst(), in: &child, line: line, fullPath: fullPath, problem: &problem)
        } else {
            var child = TOMLTable(line: line, isExplicit: isLast)
            if !isLast {
                define(path.dropFirst(), in: &child, line: line, fullPath: fullPath, problem: &problem)
            }
            table.append(key: key, line: line, item: .table(child))
        }
    }

    private static func headerName(_ path: [String]) -> String {
        "[" + path.map { isBareKey($0) ? $0 : quoted($0) }.joined(separator: ".") + "]"
    }

    private static func isBareKey(_ key: String) -> Bool {
        !key.isEmpty && key.unicodeScalars.allSatisfy(isBareKeyChar)
    }

    // MARK: - Key = value

    private mutating func readKeyValue() throws(Failure) {
        let keyLine = line
        let key = try readKey()
        skipSpaces()
        if peek() == "." {
            throw Failure(line: line, message: "dotted keys are not supported here; use a [table] header")
        }
        guard peek() == "=" else {
            throw Failure(line: line, message: "missing \"=\" after key \(quoted(key))")
        }
        position += 1
        skipSpaces()
        try countKey()
        let value = try readValue()
        try endOfLine()
        insert(key: key, line: keyLine, value: value)
    }

    private mutating func countKey() throws(Failure) {
        keyCount += 1
        if keyCount > Self.maximumKeys {
            // Past the bound nothing more is read: the error would repeat on every line.
            position = chars.count
            throw Failure(line: line, message: "more than \(Self.maximumKeys) keys and tables in one file")
        }
    }

    private mutating func insert(key: String, line keyLine: Int, value: TOMLValue) {
        guard let path = currentPath else { return }
        var problem: String?
        Self.insert(key: key, line: keyLine, value: value, path: path[...], in: &root, problem: &problem)
        if let problem {
            errors.append(TOMLSyntaxError(line: keyLine, message: problem))
        }
    }

    private static func insert(
        key: String, line: Int, value: TOMLValue, path: ArraySlice<String>,
        in table: inout TOMLTable, problem: inout String?
    ) {
        if let first = path.first {
            // The path was created by defineTable, so it exists and holds tables.
            guard let index = table.index(of: first), var child = table.takeTable(at: index) else {
                return
            }
            insert(key: key, line: line, value: value, path: path.dropFirst(), in: &child, problem: &problem)
            table.replaceItem(at: index, with: .table(child))
            return
        }
        if let existing = table[key] {
            if case .table = existing.item {
                problem = "key \(quoted(key)) conflicts with table [\(key)] defined on line \(existing.line)"
            } else {
                problem = "duplicate key \(quoted(key)) (first set on line \(existing.line))"
            }
            return
        }
        table.append(key: key, line: line, item: .value(value))
    }

    private mutating func readKey() throws(Failure) -> String {
        guard let char = peek() else {
            throw Failure(line: line, message: "expected a key")
        }
        switch char {
        case "\"":
            if peek(1) == "\"" && peek(2) == "\"" {
                throw Failure(line: line, message: "multi-line strings are not supported here")
            }
            return try readBasicString()
        case "'":
            if peek(1) == "'" && peek(2) == "'" {
                throw Failure(line: line, message: "multi-line strings are not supported here")
            }
            return try readLiteralString()
        default:
            var key = ""
            while let char = peek(), Self.isBareKeyChar(char) {
                key.unicodeScalars.append(char)
                position += 1
            }
            if key.isEmpty {
                throw Failure(line: line, message: "unexpected character \(quoted(String(char))) where a key should be")
            }
            return key
        }
    }

    private static func isBareKeyChar(_ char: Unicode.Scalar) -> Bool {
        switch char {
        case "A"..."Z", "a"..."z", "0"..."9", "_", "-": return true
        default: return false
        }
    }

    // MARK: - Values

    private mutating func readValue() throws(Failure) -> TOMLValue {
        let valueLine = line
        guard let char = peek(), char != "\n", char != "\r", char != "#" else {
            throw Failure(line: line, message: "missing value after \"=\"")
        }
        switch char {
        case "\"":
            if peek(1) == "\"" && peek(2) == "\"" {
                throw Failure(line: line, message: "multi-line strings are not supported here")
            }
            return TOMLValue(.string(try readBasicString()), line: valueLine)
        case "'":
            if peek(1) == "'" && peek(2) == "'" {
                throw Failure(line: line, message: "multi-line strings are not supported here")
            }
            return TOMLValue(.string(try readLiteralString()), line: valueLine)
        case "[":
            return try readArray()
        case "{":
            throw Failure(line: line, message: "inline tables are not supported here; use a [table] header")
        default:
            return try readBareValue()
        }
    }

    private mutating func readArray() throws(Failure) -> TOMLValue {
        let arrayLine = line
        position += 1  // [
        arrayDepth += 1
        if arrayDepth > Self.maximumDepth {
            throw Failure(line: line, message: "arrays nested more than \(Self.maximumDepth) deep")
        }
        var elements: [TOMLValue] = []
        while true {
            try skipSpacesNewlinesAndComments()
            guard let char = peek() else {
                throw Failure(line: arrayLine, message: "unterminated array (missing \"]\")")
            }
            if char == "]" {
                position += 1
                break
            }
            elements.append(try readValue())
            try skipSpacesNewlinesAndComments()
            guard let next = peek() else {
                throw Failure(line: arrayLine, message: "unterminated array (missing \"]\")")
            }
            if next == "," {
                position += 1
            } else if next == "]" {
                position += 1
                break
            } else {
                throw Failure(line: line, message: "expected \",\" or \"]\" in array, found \(quoted(String(next)))")
            }
        }
        arrayDepth -= 1
        return TOMLValue(.array(elements), line: arrayLine)
    }

    private mutating func skipSpacesNewlinesAndComments() throws(Failure) {
        while let char = peek() {
            switch char {
            case " ", "\t":
                position += 1
            case "\n":
                position += 1
                line += 1
            case "\r" where peek(1) == "\n":
                position += 2
                line += 1
            case "#":
                while let char = peek(), char != "\n", char != "\r" { position += 1 }
            default:
                return
            }
        }
    }

    /// Reads a run of characters up to a delimiter and decides what it is:
    /// a boolean, a decimal integer, or one of the unsupported forms with a clear message.
    private mutating func readBareValue() throws(Failure) -> TOMLValue {
        let valueLine = line
        var word = ""
        while let char = peek() {
            switch char {
            case " ", "\t", "\n", "\r", ",", "]", "#": break
            default:
                word.unicodeScalars.append(char)
                position += 1
                continue
            }
            break
        }
        if word.isEmpty, let char = peek() {
            throw Failure(line: line, message: "unexpected character \(quoted(String(char))) where a value should be")
        }
        switch word {
        case "true": return TOMLValue(.boolean(true), line: valueLine)
        case "false": return TOMLValue(.boolean(false), line: valueLine)
        case "inf", "+inf", "-inf", "nan", "+nan", "-nan":
            throw Failure(line: valueLine, message: "floats are not supported here")
        default: break
        }
        let scalars = Array(word.unicodeScalars)
        let startsLikeNumber = scalars.first.map { ("0"..."9").contains($0) || $0 == "+" || $0 == "-" } ?? false
        if startsLikeNumber {
            if Self.looksLikeDateOrTime(scalars) {
                throw Failure(line: valueLine, message: "dates and times are not supported here")
            }
            let body = scalars.first == "+" || scalars.first == "-" ? Array(scalars.dropFirst()) : scalars
            if body.count > 1, body[0] == "0", let radix = Self.radixes[body[1]] {
                if body.count != scalars.count {
                    throw Failure(line: valueLine, message: "bad value \(quoted(word)): \(radix.name) integers cannot have a sign")
                }
                let value = try Self.integer(word, digits: body.dropFirst(2), radix: radix, line: valueLine)
                return TOMLValue(.integer(value), line: valueLine)
            }
            if body.contains(where: { $0 == "." || $0 == "e" || $0 == "E" }),
                body.allSatisfy({ ("0"..."9").contains($0) || ".eE_+-".unicodeScalars.contains($0) })
            {
                throw Failure(line: valueLine, message: "floats are not supported here")
            }
            return TOMLValue(.integer(try Self.integer(word, body: body, line: valueLine)), line: valueLine)
        }
        throw Failure(line: valueLine, message: "bad value \(quoted(word)): strings must be in quotes")
    }

    /// The prefixes after `0` of non-decimal integers: `0x1F`, `0o17`, `0b101`.
    private static let radixes: [Unicode.Scalar: (name: String, article: String, base: Int64)] = [
        "x": ("hexadecimal", "a", 16), "o": ("octal", "an", 8), "b": ("binary", "a", 2),
    ]

    /// A hexadecimal, octal or binary integer's digits (after the prefix; `_` allowed
    /// between digits, leading zeros allowed, upper and lower case hex digits).
    private static func integer(
        _ word: String, digits: ArraySlice<Unicode.Scalar>, radix: (name: String, article: String, base: Int64), line: Int
    ) throws(Failure) -> Int64 {
        let bad = Failure(line: line, message: "bad value \(quoted(word)): not \(radix.article) \(radix.name) integer")
        guard let first = digits.first, let last = digits.last, first != "_", last != "_" else { throw bad }
        var value: Int64 = 0
        var previousWasUnderscore = false
        for char in digits {
            if char == "_" {
                if previousWasUnderscore { throw bad }
                previousWasUnderscore = true
                continue
            }
            previousWasUnderscore = false
            guard let digit = hexDigit(char), Int64(digit) < radix.base else { throw bad }
            let (shifted, overflow1) = value.multipliedReportingOverflow(by: radix.base)
            let (next, overflow2) = shifted.addingReportingOverflow(Int64(digit))
            if overflow1 || overflow2 {
                throw Failure(line: line, message: "integer \(word) is too large")
            }
            value = next
        }
        return value
    }

    private static func looksLikeDateOrTime(_ s: [Unicode.Scalar]) -> Bool {
        func digits(_ range: Range<Int>) -> Bool {
            range.upperBound <= s.count && s[range].allSatisfy { ("0"..."9").contains($0) }
        }
        let isDate = digits(0..<4) && s.count >= 5 && s[4] == "-"
        let isTime = digits(0..<2) && s.count >= 3 && s[2] == ":"
        return isDate || isTime
    }

    private static func integer(_ word: String, body: [Unicode.Scalar], line: Int) throws(Failure) -> Int64 {
        let bad = Failure(line: line, message: "bad value \(quoted(word)): not a decimal integer")
        guard let first = body.first, let last = body.last, first != "_", last != "_" else { throw bad }
        if body.count > 1 && first == "0" {
            throw Failure(line: line, message: "bad value \(quoted(word)): leading zeros are not allowed")
        }
        let negative = word.unicodeScalars.first == "-"
        var value: Int64 = 0
        var previousWasUnderscore = false
        for char in body {
            if char == "_" {
                if previousWasUnderscore { throw bad }
                previousWasUnderscore = true
                continue
            }
            previousWasUnderscore = false
            guard ("0"..."9").contains(char) else { throw bad }
            let digit = Int64(char.value - 48)
            let (times10, overflow1) = value.multipliedReportingOverflow(by: 10)
            let (next, overflow2) =
                negative ? times10.subtractingReportingOverflow(digit) : times10.addingReportingOverflow(digit)
            if overflow1 || overflow2 {
                throw Failure(line: line, message: "integer \(word) is too large")
            }
            value = next
        }
        return value
    }

    // MARK: - Strings

    private mutating func readBasicString() throws(Failure) -> String {
        let startLine = line
        position += 1  // "
        var text = ""
        while true {
            guard let char = peek(), char != "\n", char != "\r" else {
                throw Failure(line: startLine, message: "unterminated string (missing closing \")")
            }
            position += 1
            switch char {
            case "\"":
                return text
            case "\\":
                text.unicodeScalars.append(try readEscape())
            default:
                if char.value < 0x20 && char != "\t" || char.value == 0x7F {
                    throw Failure(line: line, message: "control character U+\(hex(char.value)) in string")
                }
                text.unicodeScalars.append(char)
            }
        }
    }

    private mutating func readEscape() throws(Failure) -> Unicode.Scalar {
        guard let char = peek(), char != "\n", char != "\r" else {
            throw Failure(line: line, message: "unterminated string (missing closing \")")
        }
        position += 1
        switch char {
        case "\"": return "\""
        case "\\": return "\\"
        case "b": return "\u{08}"
        case "t": return "\t"
        case "n": return "\n"
        case "f": return "\u{0C}"
        case "r": return "\r"
        case "u": return try readUnicodeEscape(digits: 4)
        case "U": return try readUnicodeEscape(digits: 8)
        default:
            throw Failure(line: line, message: "invalid escape \(quoted("\\" + String(char))) in string")
        }
    }

    private mutating func readUnicodeEscape(digits: Int) throws(Failure) -> Unicode.Scalar {
        var value: UInt32 = 0
        for _ in 0..<digits {
            guard let char = peek(), let digit = Self.hexDigit(char) else {
                throw Failure(line: line, message: "invalid \\\(digits == 4 ? "u" : "U") escape: expected \(digits) hex digits")
            }
            value = value * 16 + digit
            position += 1
        }
        guard let scalar = Unicode.Scalar(value) else {
            throw Failure(line: line, message: "invalid escape: U+\(hex(value)) is not a Unicode scalar value")
        }
        return scalar
    }

    private static func hexDigit(_ char: Unicode.Scalar) -> UInt32? {
        switch char {
        case "0"..."9": return char.value - 48
        case "a"..."f": return char.value - 97 + 10
        case "A"..."F": return char.value - 65 + 10
        default: return nil
        }
    }

    private mutating func readLiteralString() throws(Failure) -> String {
        let startLine = line
        position += 1  // '
        var text = ""
        while true {
            guard let char = peek(), char != "\n", char != "\r" else {
                throw Failure(line: startLine, message: "unterminated string (missing closing ')")
            }
            position += 1
            if char == "'" { return text }
            if char.value < 0x20 && char != "\t" || char.value == 0x7F {
                throw Failure(line: line, message: "control character U+\(hex(char.value)) in string")
            }
            text.unicodeScalars.append(char)
        }
    }

    // MARK: - Helpers

    private func peek(_ offset: Int = 0) -> Unicode.Scalar? {
        let index = position + offset
        return index < chars.count ? chars[index] : nil
    }

    private mutating func skipSpaces() {
        while let char = peek(), char == " " || char == "\t" { position += 1 }
    }
}

private func hex(_ value: UInt32) -> String {
    let digits = String(value, radix: 16, uppercase: true)
    return String(repeating: "0", count: max(0, 4 - digits.count)) + digits
}

/// `"text"` with `"` and `\` escaped: how messages quote keys and values.
func quoted(_ text: String) -> String {
    var out = "\""
    for char in text.unicodeScalars {
        switch char {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\t": out += "\\t"
        default:
            if char.value < 0x20 || char.value == 0x7F {
                out += "\\u" + hex(char.value)
            } else {
                out.unicodeScalars.append(char)
            }
        }
    }
    return out + "\""
}
