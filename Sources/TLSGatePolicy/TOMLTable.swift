/// A TOML table: its entries in file order, each remembering the line of its key.
///
/// The root of a document is a table too (its `line` is 1).
public struct TOMLTable: Sendable, Equatable {
    /// A key of this table and what it holds.
    public struct Entry: Sendable, Equatable {
        public let key: String
        /// The 1-based line of the key (for a table: of the header that defined it).
        public let line: Int
        public let item: Item
    }

    /// What a key holds: a value, or a nested table from a `[a.b]` header.
    public indirect enum Item: Sendable, Equatable {
        case value(TOMLValue)
        case table(TOMLTable)
    }

    /// The 1-based line of the header that defined this table (1 for the root).
    public let line: Int
    /// The entries in the order they appear in the file.
    public internal(set) var entries: [Entry]
    /// False for a table that only exists because of a longer header, e.g. `a` in `[a.b]`.
    var isExplicit: Bool
    /// Where each key is in `entries` (the first one, as a lookup finds it): reading
    /// and looking up stay linear in the number of keys.
    private var positions: [String: Int] = [:]

    public init(line: Int, entries: [Entry] = []) {
        self.line = line
        self.entries = entries
        self.isExplicit = true
        for (index, entry) in entries.enumerated() where positions[entry.key] == nil { positions[entry.key] = index }
    }

    init(line: Int, isExplicit: Bool) {
        self.line = line
        self.entries = []
        self.isExplicit = isExplicit
    }

    /// The entry for `key`, if any.
    public subscript(key: String) -> Entry? {
        positions[key].map { entries[$0] }
    }

    /// The value under `key`, if the key holds a value (not a table).
    public func value(_ key: String) -> TOMLValue? {
        if case .value(let value)? = self[key]?.item { return value }
        return nil
    }

    /// The nested table under `key`, if the key holds a table.
    public func table(_ key: String) -> TOMLTable? {
        if case .table(let table)? = self[key]?.item { return table }
        return nil
    }

    func index(of key: String) -> Int? {
        positions[key]
    }

    mutating func replaceItem(at index: Int, with item: Item) {
        let old = entries[index]
        entries[index] = Entry(key: old.key, line: old.line, item: item)
    }

    mutating func append(key: String, line: Int, item: Item) {
        if positions[key] == nil { positions[key] = entries.count }
        entries.append(Entry(key: key, line: line, item: item))
    }

    /// Takes the nested table at `index` out (leaving a placeholder), so that the caller
    /// holds the only reference and can change it without copying it; put it back with
    /// `replaceItem`.
    mutating func takeTable(at index: Int) -> TOMLTable? {
        guard case .table(let child) = entries[index].item else { return nil }
        replaceItem(at: index, with: .table(TOMLTable(line: 0, isExplicit: false)))
        return child
    }

    /// Two tables are equal when they hold the same entries on the same lines.
    public static func == (lhs: TOMLTable, rhs: TOMLTable) -> Bool {
        lhs.line == rhs.line && lhs.entries == rhs.entries
    }
}
