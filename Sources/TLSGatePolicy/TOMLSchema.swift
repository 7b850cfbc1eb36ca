/// The keys and tables a kind of TOML file may contain, and the message for anything else:
/// what was probably meant (edit distance, see `Spelling`), or where the key belongs.
///
/// Shared by policy files (`PolicySchema.schema`) and the global config
/// (`GatewayConfigSchema.schema`). Known tables have no sub-tables.
struct TOMLSchema: Sendable {
    /// Keys allowed at the top of the file, before any table.
    var rootKeys: [String] = []
    /// Known tables and their keys, in the order they are documented.
    var tables: [(name: String, keys: [String])]
    /// Said about an unknown top-level key when nothing better fits,
    /// e.g. `policy keys go in [match], [upstream], ...`.
    var rootKeyHint: String?
    /// Keys not implemented yet: key → the table it will go in.
    var plannedKeys: [String: String] = [:]
    /// Tables that belong in another kind of file: name → where they go.
    var foreignTables: [String: String] = [:]
    /// A hint that wins over all others for some keys or table names (nil: none),
    /// e.g. that certificate verification cannot be turned off.
    var overridingHint: @Sendable (_ name: String) -> String? = { _ in nil }

    var tableNames: [String] { tables.map(\.name) }

    func keys(of table: String) -> [String] {
        tables.first { $0.name == table }?.keys ?? []
    }

    /// Every unknown key or table in `root`, with its line, in file order.
    func check(_ root: TOMLTable) -> [(line: Int, message: String)] {
        var problems: [(line: Int, message: String)] = []
        for entry in root.entries {
            switch entry.item {
            case .value:
                if !rootKeys.contains(entry.key) {
                    problems.append((entry.line, unknownKeyMessage(entry.key, in: nil)))
                }
            case .table(let table):
                guard tableNames.contains(entry.key) else {
                    problems.append((table.line, unknownTableMessage(entry.key)))
                    continue
                }
                let known = keys(of: entry.key)
                for child in table.entries {
                    switch child.item {
                    case .value:
                        if !known.contains(child.key) {
                            problems.append((child.line, unknownKeyMessage(child.key, in: entry.key)))
                        }
                    case .table(let nested):
                        problems.append(
                            (nested.line, "unknown table [\(entry.key).\(child.key)] ([\(entry.key)] has no sub-tables)"))
                    }
                }
            }
        }
        return problems
    }

    /// The message for an unknown key in `table` (nil = at the top, before any table).
    func unknownKeyMessage(_ key: String, in table: String?) -> String {
        let base = "unknown key \(quoted(key))"
        if let hint = overridingHint(key) {
            return "\(base) (\(hint))"
        }
        if let match = Spelling.closest(to: key, among: table.map(keys(of:)) ?? rootKeys) {
            return "\(base) (did you mean \(quoted(match))?)"
        }
        let place = table.map { "in [\($0)]" } ?? "outside any table"
        let owners = tables.filter { $0.name != table && $0.keys.contains(key) }.map { "[\($0.name)]" }
        if !owners.isEmpty {
            return "\(base) \(place) (it belongs in \(owners.joined(separator: " or ")))"
        }
        if table != nil && rootKeys.contains(key) {
            return "\(base) \(place) (it belongs at the top of the file, before any [table] header)"
        }
        if tableNames.contains(key) {
            return "\(base) ([\(key)] is a table: write [\(key)] on a line of its own, then its keys below it)"
        }
        if let planned = plannedKeys[key] {
            return "\(base) ([\(planned)] \(key) is not supported yet)"
        }
        if table == nil, let rootKeyHint {
            return "\(base) outside any table (\(rootKeyHint))"
        }
        return base
    }

    /// The message for an unknown table, given as its dotted name.
    func unknownTableMessage(_ name: String) -> String {
        let base = "unknown table [\(name)]"
        if let hint = overridingHint(name) {
            return "\(base) (\(hint))"
        }
        if let match = Spelling.closest(to: name, among: tableNames) {
            return "\(base) (did you mean [\(match)]?)"
        }
        if rootKeys.contains(name) {
            return "\(base) (\(name) is a key: write \(name) = ... at the top of the file, before any [table] header)"
        }
        if let place = foreignTables[name] {
            return "\(base) (\(place))"
        }
        return "\(base) (known tables: \(tableNames.map { "[\($0)]" }.joined(separator: ", ")))"
    }
}
