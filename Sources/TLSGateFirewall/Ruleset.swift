/// Renders an `InterceptionPlan` as one nftables script for the gateway's two tables:
/// `nft -f` applies a whole file as a single transaction, so packets see either the old
/// rules or the new ones.
///
/// - `inet tlsgate` intercepts: it redirects (or TPROXYs) LAN connections to the policies'
///   listen ports. Deleted when the gateway stops.
/// - `inet tlsgate_guard` fails closed: LAN connections to a configured destination and
///   match port that were *not* intercepted (gateway stopped or killed, policy disabled)
///   are rejected with a TCP reset instead of being forwarded in clear; `deny_direct`
///   drops live here too. Only `tlsgate run` replaces it and only `tlsgate rules --remove`
///   (or `[intercept] on_stop = "open"`) deletes it, so it outlives the supervisor, even a
///   `kill -9`.
///
/// Tables that exist are updated **in place**: their base chains stay hooked, their rules
/// are flushed and written again and their sets refilled, in the same transaction.
/// Deleting and re-creating a table with its base chains, though one transaction too, is
/// not seamless for packets in flight: under load, 400 such replacements refused 1,385 of
/// 30,834 redirected connections and let a SYN through un-redirected and unguarded, while
/// 400 in-place updates refused none (see `RulesetTests`, `test_fail_closed.py`).
public enum Ruleset {
    public static let tableFamily = "inet"
    public static let tableName = "tlsgate"
    public static let guardTableName = "tlsgate_guard"

    /// The named objects a table holds now (`nft list table`), for an in-place update.
    public struct TableContents: Sendable, Equatable {
        public var sets: [String]
        public var chains: [String]

        public init(sets: [String] = [], chains: [String] = []) {
            self.sets = sets
            self.chains = chains
        }

        /// Reads the `set NAME {` and `chain NAME {` lines of `nft list table` output.
        public static func parse(_ listing: String) -> TableContents {
            var result = TableContents()
            for line in listing.split(separator: "\n") {
                let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
                guard words.count == 3, words[2] == "{" else { continue }
                if words[0] == "set" { result.sets.append(words[1]) }
                if words[0] == "chain" { result.chains.append(words[1]) }
            }
            return result
        }
    }

    /// The script for `plan`, given what the tables hold now (`existing`, by table name;
    /// a missing table is created). Each existing table is updated in place: its rules
    /// flushed, the sets it keeps emptied, the sets and chains it no longer needs deleted,
    /// then everything declared again (an existing set or chain with the same definition
    /// is kept as it is, with its hook).
    public static func script(for plan: InterceptionPlan, existing: [String: TableContents] = [:]) -> String {
        var out = "# tlsgate: interception rules (mode \(plan.mode.rawValue)); generated, do not edit\n"
        let wanted = [
            tableName: (sets: setNames(plan, entries: plan.entries.filter(\.intercepted)), chains: [chainName(plan, guard: false)]),
            guardTableName: (sets: setNames(plan, entries: plan.entries), chains: [chainName(plan, guard: true)]),
        ]
        for table in [tableName, guardTableName] {
            guard let now = existing[table], let want = wanted[table] else { continue }
            out += "flush table \(tableFamily) \(table)\n"
            for set in now.sets {
                out += want.sets.contains(set)
                    ? "flush set \(tableFamily) \(table) \(set)\n" : "delete set \(tableFamily) \(table) \(set)\n"
            }
            for chain in now.chains where !want.chains.contains(chain) {
                out += "delete chain \(tableFamily) \(table) \(chain)\n"
            }
        }
        out += body(for: plan)
        out += guardBody(for: plan)
        return out
    }

    /// The script that replaces both tables by deleting and re-creating them (for each
    /// table create-then-delete, so a missing table is not an error): the fallback when an
    /// in-place update is refused (a table left by another mode or another version).
    public static func replacementScript(for plan: InterceptionPlan) -> String {
        var out = "# tlsgate: interception rules (mode \(plan.mode.rawValue)); generated, do not edit\n"
        for table in [tableName, guardTableName] {
            out += "table \(tableFamily) \(table)\n"
            out += "delete table \(tableFamily) \(table)\n"
        }
        out += body(for: plan)
        out += guardBody(for: plan)
        return out
    }

    /// The base chain of each table in this mode.
    static func chainName(_ plan: InterceptionPlan, guard isGuard: Bool) -> String {
        switch plan.mode {
        case .redirect, .tproxy: return isGuard ? "forward" : "prerouting"
        case .local: return "output"
        }
    }

    /// The script that deletes both tables (`tlsgate rules --remove`); missing ones are no error.
    public static func removalScript(includingGuard: Bool = true) -> String {
        var out = ""
        for table in includingGuard ? [tableName, guardTableName] : [tableName] {
            out += "table \(tableFamily) \(table)\ndelete table \(tableFamily) \(table)\n"
        }
        return out
    }

    /// The script that takes the kernel from `old` to `new` when they differ only in the
    /// policies' destination addresses (a `[match] hosts` name's addresses changed): one
    /// transaction touching only the changed policies' `dst_` sets, in both tables (the
    /// guard covers the new addresses at once). Addresses that only enter are `add element`;
    /// a set that loses one is flushed and refilled in the same transaction (its adjacent
    /// elements may have been merged by `auto-merge`, so `delete element` of one of them
    /// would fail), which no packet sees half done. Rules, other sets and established
    /// connections are untouched. Nil when anything else differs, or a set would have to
    /// appear or vanish (a family that had no address gets one): then the whole script.
    /// Empty when nothing changed.
    public static func elementUpdate(from old: InterceptionPlan, to new: InterceptionPlan) -> String? {
        guard old.mode == new.mode, old.clients == new.clients, old.exemptUIDs == new.exemptUIDs,
            old.tproxyMark == new.tproxyMark, old.entries.count == new.entries.count
        else { return nil }
        var lines: [String] = []
        for (before, after) in zip(old.entries, new.entries) {
            var same = after
            same.ipv4 = before.ipv4
            same.ipv6 = before.ipv6
            guard same == before else { return nil }
            for v6 in [false, true] {
                let was = v6 ? before.ipv6 : before.ipv4
                let now = v6 ? after.ipv6 : after.ipv4
                guard was.isEmpty == now.isEmpty else { return nil }
                guard Set(was) != Set(now) else { continue }
                let name = setName(after, v6: v6)
                let added = now.filter { !was.contains($0) }
                let lost = was.contains { !now.contains($0) }
                for table in after.intercepted ? [tableName, guardTableName] : [guardTableName] {
                    if lost {
                        lines.append("flush set \(tableFamily) \(table) \(name)")
                        lines.append("add element \(tableFamily) \(table) \(name) { \(now.joined(separator: ", ")) }")
                    } else {
                        lines.append("add element \(tableFamily) \(table) \(name) { \(added.joined(separator: ", ")) }")
                    }
                }
            }
        }
        guard !lines.isEmpty else { return "" }
        return "# tlsgate: destination addresses changed; generated, do not edit\n" + lines.joined(separator: "\n") + "\n"
    }

    /// The interception table.
    public static func body(for plan: InterceptionPlan) -> String {
        var lines: [String] = []
        let active = plan.entries.filter(\.intercepted)
        lines.append("table \(tableFamily) \(tableName) {")
        lines += sets(plan, entries: active)

        switch plan.mode {
        case .redirect:
            lines.append("  chain prerouting {")
            lines.append("    type nat hook prerouting priority dstnat; policy accept;")
            for entry in active {
                for v6 in [false, true] where hasFamily(entry, v6: v6) {
                    for source in sources(plan, v6: v6) {
                        lines.append(
                            "    \(source)\(daddr(entry, v6: v6)) tcp dport \(entry.matchPort) redirect to :\(entry.listenPort) comment \"\(entry.name)\"")
                    }
                }
            }
            lines.append("  }")
        case .tproxy:
            lines.append("  chain prerouting {")
            lines.append("    type filter hook prerouting priority mangle; policy accept;")
            let mark = "0x" + String(plan.tproxyMark, radix: 16)
            for entry in active {
                for v6 in [false, true] where hasFamily(entry, v6: v6) {
                    for source in sources(plan, v6: v6) {
                        lines.append(
                            "    \(source)\(daddr(entry, v6: v6)) tcp dport \(entry.matchPort) tproxy \(v6 ? "ip6" : "ip") to :\(entry.listenPort) meta mark set \(mark) accept comment \"\(entry.name)\"")
                    }
                }
            }
            lines.append("  }")
        case .local:
            lines.append("  chain output {")
            lines.append("    type nat hook output priority -100; policy accept;")
            for entry in active {
                for v6 in [false, true] where hasFamily(entry, v6: v6) {
                    lines.append(
                        "    \(ownConnectionsExempt(plan)) \(daddr(entry, v6: v6)) tcp dport \(entry.matchPort) redirect to :\(entry.listenPort) comment \"\(entry.name)\"")
                }
            }
            lines.append("  }")
        }
        lines.append("}")
        return lines.joined(separator: "\n") + "\n"
    }

    /// The fail-closed table: every configured policy, intercepted or not.
    ///
    /// Forwarded LAN traffic never meets an intercepted connection here (REDIRECT and
    /// TPROXY deliver it locally, to the input path), so a reset in `forward` only hits
    /// what would otherwise leave in clear. In local mode the filter output chain runs
    /// after nat output: a redirected connection's destination is already local.
    public static func guardBody(for plan: InterceptionPlan) -> String {
        var lines: [String] = []
        lines.append("table \(tableFamily) \(guardTableName) {")
        lines += sets(plan, entries: plan.entries)
        switch plan.mode {
        case .redirect, .tproxy:
            lines.append("  chain forward {")
            lines.append("    type filter hook forward priority filter; policy accept;")
            for entry in plan.entries {
                for v6 in [false, true] where hasFamily(entry, v6: v6) {
                    for source in sources(plan, v6: v6) {
                        lines.append(
                            "    \(source)\(daddr(entry, v6: v6)) tcp dport \(entry.matchPort) counter reject with tcp reset comment \"\(entry.name) fail-closed\"")
                        // Only the gateway speaks to these servers' TLS ports: LAN hosts going around it are dropped.
                        if entry.denyDirect && entry.upstreamPort != entry.matchPort {
                            lines.append(
                                "    \(source)\(daddr(entry, v6: v6)) tcp dport \(entry.upstreamPort) counter drop comment \"\(entry.name) deny_direct\"")
                        }
                    }
                }
            }
            lines.append("  }")
        case .local:
            lines.append("  chain output {")
            lines.append("    type filter hook output priority filter; policy accept;")
            for entry in plan.entries {
                for v6 in [false, true] where hasFamily(entry, v6: v6) {
                    lines.append(
                        "    \(ownConnectionsExempt(plan)) \(daddr(entry, v6: v6)) tcp dport \(entry.matchPort) counter reject with tcp reset comment \"\(entry.name) fail-closed\"")
                }
            }
            lines.append("  }")
        }
        lines.append("}")
        return lines.joined(separator: "\n") + "\n"
    }

    /// `local` mode's match for every connection but the gateway's own (the supervisor's
    /// and its workers' uids): `meta skuid != 999`, or `meta skuid != { 995, 999 }`.
    static func ownConnectionsExempt(_ plan: InterceptionPlan) -> String {
        let uids = plan.exemptUIDs
        if uids.count == 1 { return "meta skuid != \(uids[0])" }
        return "meta skuid != { \(uids.map(String.init).joined(separator: ", ")) }"
    }

    /// The client sets and one pair of destination sets per policy: name, type, elements.
    private static func setDefinitions(_ plan: InterceptionPlan, entries: [InterceptionPlan.Entry])
        -> [(name: String, type: String, elements: [String])]
    {
        var result: [(name: String, type: String, elements: [String])] = []
        if !plan.clients.ipv4.isEmpty { result.append(("clients_v4", "ipv4_addr", plan.clients.ipv4)) }
        if !plan.clients.ipv6.isEmpty { result.append(("clients_v6", "ipv6_addr", plan.clients.ipv6)) }
        for entry in entries {
            if !entry.ipv4.isEmpty { result.append((setName(entry, v6: false), "ipv4_addr", entry.ipv4)) }
            if !entry.ipv6.isEmpty { result.append((setName(entry, v6: true), "ipv6_addr", entry.ipv6)) }
        }
        return result
    }

    private static func sets(_ plan: InterceptionPlan, entries: [InterceptionPlan.Entry]) -> [String] {
        setDefinitions(plan, entries: entries).map { set($0.name, type: $0.type, $0.elements) }
    }

    static func setNames(_ plan: InterceptionPlan, entries: [InterceptionPlan.Entry]) -> [String] {
        setDefinitions(plan, entries: entries).map(\.name)
    }

    /// The policy routing TPROXY needs: marked packets are delivered locally.
    public static func tproxyRouting(mark: UInt32, table: Int = 100) -> [[String]] {
        let m = "0x" + String(mark, radix: 16)
        return [
            ["-4", "rule", "add", "fwmark", m, "lookup", "\(table)"],
            ["-4", "route", "add", "local", "0.0.0.0/0", "dev", "lo", "table", "\(table)"],
            ["-6", "rule", "add", "fwmark", m, "lookup", "\(table)"],
            ["-6", "route", "add", "local", "::/0", "dev", "lo", "table", "\(table)"],
        ]
    }

    /// The `ip` commands that undo `tproxyRouting` (each `add` becomes `del`).
    public static func tproxyRoutingRemoval(mark: UInt32, table: Int = 100) -> [[String]] {
        tproxyRouting(mark: mark, table: table).map { arguments in
            arguments.map { $0 == "add" ? "del" : $0 }
        }
    }

    /// The destination set of a policy. Injective over policy names (`[A-Za-z0-9._-]+`):
    /// `_` is doubled, `-` becomes `_d` and `.` becomes `_p`, so `a-b`, `a_b` and `a.b` get
    /// three different sets (`dst_a_db_v4`, `dst_a__b_v4`, `dst_a_pb_v4`).
    public static func setName(_ entry: InterceptionPlan.Entry, v6: Bool) -> String {
        "dst_\(escapedName(entry.name))_\(v6 ? "v6" : "v4")"
    }

    static func escapedName(_ name: String) -> String {
        var out = ""
        for character in name {
            switch character {
            case "_": out += "__"
            case "-": out += "_d"
            case ".": out += "_p"
            case let c where c.isASCII && (c.isLetter || c.isNumber): out.append(c)
            default:
                // Not a valid policy name character (the loader refuses those): still injective.
                out += character.unicodeScalars.map { "_u\(String($0.value, radix: 16))_" }.joined()
            }
        }
        return out
    }

    private static func hasFamily(_ entry: InterceptionPlan.Entry, v6: Bool) -> Bool {
        v6 ? !entry.ipv6.isEmpty : !entry.ipv4.isEmpty
    }

    private static func daddr(_ entry: InterceptionPlan.Entry, v6: Bool) -> String {
        "\(v6 ? "ip6" : "ip") daddr @\(setName(entry, v6: v6))"
    }

    /// One rule prefix per way clients are named: the client set of that family, and/or
    /// the LAN interfaces.
    private static func sources(_ plan: InterceptionPlan, v6: Bool) -> [String] {
        var result: [String] = []
        let networks = v6 ? plan.clients.ipv6 : plan.clients.ipv4
        if !networks.isEmpty { result.append("\(v6 ? "ip6" : "ip") saddr @clients_\(v6 ? "v6" : "v4") ") }
        if !plan.clients.interfaces.isEmpty {
            let names = plan.clients.interfaces.map { "\"\($0)\"" }.joined(separator: ", ")
            result.append("iifname { \(names) } ")
        }
        return result
    }

    private static func set(_ name: String, type: String, _ elements: [String]) -> String {
        "  set \(name) {\n    type \(type); flags interval; auto-merge;\n    elements = { \(elements.joined(separator: ", ")) }\n  }"
    }
}
