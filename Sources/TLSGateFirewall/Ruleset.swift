/// Renders an `InterceptionPlan` as one nftables script that replaces the gateway's own
/// table atomically: `nft -f` applies a whole file as a single transaction, so the table
/// is either entirely the old one or entirely the new one.
public enum Ruleset {
    public static let tableFamily = "inet"
    public static let tableName = "tlsgate"

    /// The script: create-then-delete (so a missing table is not an error), then the table.
    public static func script(for plan: InterceptionPlan) -> String {
        var out = "# tlsgate: interception rules (mode \(plan.mode.rawValue)); generated, do not edit\n"
        out += "table \(tableFamily) \(tableName)\n"
        out += "delete table \(tableFamily) \(tableName)\n"
        out += body(for: plan)
        return out
    }

    /// Just the table, as `tlsgate rules` prints it.
    public static func body(for plan: InterceptionPlan) -> String {
        var lines: [String] = []
        lines.append("table \(tableFamily) \(tableName) {")
        // Client sets.
        if !plan.clients.ipv4.isEmpty {
            lines.append(set("clients_v4", type: "ipv4_addr", plan.clients.ipv4))
        }
        if !plan.clients.ipv6.isEmpty {
            lines.append(set("clients_v6", type: "ipv6_addr", plan.clients.ipv6))
        }
        // Destination sets, one pair per policy.
        for entry in plan.entries {
            if !entry.ipv4.isEmpty { lines.append(set(setName(entry, v6: false), type: "ipv4_addr", entry.ipv4)) }
            if !entry.ipv6.isEmpty { lines.append(set(setName(entry, v6: true), type: "ipv6_addr", entry.ipv6)) }
        }

        switch plan.mode {
        case .redirect:
            lines.append("  chain prerouting {")
            lines.append("    type nat hook prerouting priority dstnat; policy accept;")
            for entry in plan.entries {
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
            for entry in plan.entries {
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
            for entry in plan.entries {
                for v6 in [false, true] where hasFamily(entry, v6: v6) {
                    lines.append(
                        "    meta skuid != \(plan.gatewayUID) \(daddr(entry, v6: v6)) tcp dport \(entry.matchPort) redirect to :\(entry.listenPort) comment \"\(entry.name)\"")
                }
            }
            lines.append("  }")
        }

        let denied = plan.entries.filter(\.denyDirect)
        if !denied.isEmpty && plan.mode != .local {
            // Only the gateway speaks to these servers' TLS ports: LAN hosts going around it are dropped.
            lines.append("  chain forward {")
            lines.append("    type filter hook forward priority filter; policy accept;")
            for entry in denied {
                for v6 in [false, true] where hasFamily(entry, v6: v6) {
                    for source in sources(plan, v6: v6) {
                        lines.append(
                            "    \(source)\(daddr(entry, v6: v6)) tcp dport \(entry.upstreamPort) counter drop comment \"\(entry.name) deny_direct\"")
                    }
                }
            }
            lines.append("  }")
        }
        lines.append("}")
        return lines.joined(separator: "\n") + "\n"
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

    public static func setName(_ entry: InterceptionPlan.Entry, v6: Bool) -> String {
        let safe = entry.name.map { $0.isLetter || $0.isNumber ? $0 : "_" }
        return "dst_\(String(safe))_\(v6 ? "v6" : "v4")"
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
