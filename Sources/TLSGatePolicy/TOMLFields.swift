/// Typed lookups in one file's TOML document that report what is wrong, on the value's
/// line, and go on: shared by the policy and global config decoders so that the same
/// mistake gets the same message in both.
///
/// Every lookup takes the table name (nil: the top of the file) and the key as written in
/// the file. A wrong value is reported and gives nil; a missing key gives the default.
struct TOMLFields {
    /// The path as the caller gave it: used in diagnostics.
    let file: String
    let root: TOMLTable
    private(set) var diagnostics: [Diagnostic] = []

    init(file: String, root: TOMLTable) {
        self.file = file
        self.root = root
    }

    var hasErrors: Bool { diagnostics.contains(where: \.isError) }

    mutating func error(_ line: Int?, _ message: String) {
        diagnostics.append(.error(file, line, message))
    }

    mutating func warning(_ line: Int?, _ message: String) {
        diagnostics.append(.warning(file, line, message))
    }

    /// Reports every key and table `schema` does not know.
    mutating func checkStructure(_ schema: TOMLSchema) {
        for (line, message) in schema.check(root) {
            error(line, message)
        }
    }

    /// The value of `key` in `[table]` (or at the top when `table` is nil), if the file sets it.
    func value(_ table: String?, _ key: String) -> TOMLValue? {
        guard let table else { return root.value(key) }
        return root.table(table)?.value(key)
    }

    /// The line to blame for a missing key: the table's header, or line 1 if the table is
    /// missing (or the key belongs at the top).
    func headerLine(_ table: String?) -> Int {
        table.flatMap { root.table($0)?.line } ?? 1
    }

    /// A string value; nil (after reporting) for another type.
    mutating func string(_ table: String?, _ key: String, what: String = "a string") -> String? {
        guard let value = value(table, key) else { return nil }
        guard let text = value.stringValue else {
            error(value.line, "\(key) must be \(what), got \(value.typeDescription)")
            return nil
        }
        return text
    }

    /// An integer in `range`; `defaultValue` if the key is missing, nil after reporting.
    /// `hex` writes the bounds in hexadecimal (for marks and masks).
    mutating func integer(
        _ table: String?, _ key: String, default defaultValue: Int64?, range: ClosedRange<Int64>,
        example: String? = nil, hex: Bool = false
    ) -> Int64? {
        guard let value = value(table, key) else { return defaultValue }
        guard let number = value.integerValue else {
            let such = example.map { " such as \($0)" } ?? ""
            error(value.line, "\(key) must be an integer\(such), got \(value.typeDescription)")
            return nil
        }
        guard range.contains(number) else {
            let show: (Int64) -> String = { hex ? "0x" + String($0, radix: 16) : String($0) }
            error(value.line, "\(key) must be between \(show(range.lowerBound)) and \(show(range.upperBound)), got \(show(number))")
            return nil
        }
        return number
    }

    /// A duration such as `"5s"` in `range`; `defaultValue` if the key is missing.
    mutating func duration(
        _ table: String?, _ key: String, default defaultValue: TimeSpan?, range: ClosedRange<TimeSpan>
    ) -> TimeSpan? {
        guard let value = value(table, key) else { return defaultValue }
        guard let text = value.stringValue else {
            error(value.line, "\(key) must be a duration string such as \"5s\", got \(value.typeDescription)")
            return nil
        }
        guard let span = TimeSpan(text) else {
            error(value.line, "\(key) \(quoted(text)) is not a duration: use a number and a unit, e.g. \"250ms\", \"5s\", \"1h30m\"")
            return nil
        }
        guard range.contains(span) else {
            error(value.line, "\(key) \(quoted(text)) is out of range: must be between \(range.lowerBound) and \(range.upperBound)")
            return nil
        }
        return span
    }

    /// One of a fixed set of words, with a did-you-mean for a typo.
    mutating func word(_ table: String?, _ key: String, among words: [String], default defaultValue: String) -> String? {
        guard let value = value(table, key) else { return defaultValue }
        guard let text = value.stringValue else {
            error(value.line, "\(key) must be \(Spelling.alternatives(words)), got \(value.typeDescription)")
            return nil
        }
        guard words.contains(text) else {
            var message = "\(key) must be \(Spelling.alternatives(words)), got \(quoted(text))"
            if let match = Spelling.suggestion(for: text, among: words) {
                message += " (did you mean \(quoted(match))?)"
            }
            error(value.line, message)
            return nil
        }
        return text
    }

    /// One of an enum's raw values, with a did-you-mean for a typo.
    mutating func choice<Choice: RawRepresentable & CaseIterable>(
        _ table: String?, _ key: String, default defaultValue: Choice
    ) -> Choice? where Choice.RawValue == String {
        word(table, key, among: Choice.allCases.map(\.rawValue), default: defaultValue.rawValue)
            .flatMap(Choice.init(rawValue:))
    }

    /// The elements of an array of strings with their lines; nil (after reporting) otherwise.
    mutating func strings(_ value: TOMLValue, key: String, example: String) -> [(text: String, line: Int)]? {
        guard let elements = value.arrayValue else {
            error(value.line, "\(key) must be an array of strings such as \(example), got \(value.typeDescription)")
            return nil
        }
        var result: [(text: String, line: Int)] = []
        var ok = true
        for element in elements {
            if let text = element.stringValue {
                result.append((text, element.line))
            } else {
                error(element.line, "\(key) must contain only strings, got \(element.typeDescription)")
                ok = false
            }
        }
        return ok ? result : nil
    }
}
