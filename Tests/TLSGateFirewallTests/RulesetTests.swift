import Foundation
import Testing

@testable import TLSGateFirewall

@Suite struct RulesetTests {
    let http = InterceptionPlan.Entry(
        name: "http-example", ipv4: ["203.0.113.0/24"], ipv6: ["2001:db8::/32"], matchPort: 80, upstreamPort: 443,
        listenPort: 41000, denyDirect: true)
    let ldap = InterceptionPlan.Entry(
        name: "ldap", ipv4: ["198.51.100.7/32"], ipv6: [], matchPort: 389, upstreamPort: 636, listenPort: 41001,
        denyDirect: false)

    @Test func redirectRulesPerFamilyAndPolicy() {
        let plan = InterceptionPlan(
            mode: .redirect, clients: .init(ipv4: ["198.18.0.0/24"], ipv6: ["2001:2::/64"]), entries: [http, ldap],
            gatewayUID: 999)
        let body = Ruleset.body(for: plan)
        #expect(body.contains("type nat hook prerouting priority dstnat; policy accept;"))
        #expect(body.contains(
            "ip saddr @clients_v4 ip daddr @dst_http_dexample_v4 tcp dport 80 redirect to :41000 comment \"http-example\""))
        #expect(body.contains(
            "ip6 saddr @clients_v6 ip6 daddr @dst_http_dexample_v6 tcp dport 80 redirect to :41000 comment \"http-example\""))
        #expect(body.contains("ip daddr @dst_ldap_v4 tcp dport 389 redirect to :41001"))
        #expect(!body.contains("dst_ldap_v6"))
        #expect(body.contains("elements = { 203.0.113.0/24 }"))
        // deny_direct only for the policy that asks for it, on the upstream port, in the guard table.
        #expect(!body.contains("drop"))
        let guardBody = Ruleset.guardBody(for: plan)
        #expect(guardBody.contains("ip saddr @clients_v4 ip daddr @dst_http_dexample_v4 tcp dport 443 counter drop"))
        #expect(!guardBody.contains("tcp dport 636"))
    }

    @Test func guardRejectsWhatIsNotInterceptedForEveryConfiguredPolicy() {
        var disabled = ldap
        disabled.intercepted = false
        let plan = InterceptionPlan(
            mode: .redirect, clients: .init(ipv4: ["198.18.0.0/24"], ipv6: ["2001:2::/64"]), entries: [http, disabled],
            gatewayUID: 999)
        let guardBody = Ruleset.guardBody(for: plan)
        #expect(guardBody.hasPrefix("table inet tlsgate_guard {"))
        #expect(guardBody.contains("type filter hook forward priority filter; policy accept;"))
        #expect(guardBody.contains(
            "ip saddr @clients_v4 ip daddr @dst_http_dexample_v4 tcp dport 80 counter reject with tcp reset comment \"http-example fail-closed\""))
        #expect(guardBody.contains(
            "ip6 saddr @clients_v6 ip6 daddr @dst_http_dexample_v6 tcp dport 80 counter reject with tcp reset"))
        // A disabled policy is guarded but not intercepted.
        #expect(guardBody.contains("ip daddr @dst_ldap_v4 tcp dport 389 counter reject with tcp reset"))
        let body = Ruleset.body(for: plan)
        #expect(!body.contains("dst_ldap"))
        #expect(body.contains("redirect to :41000"))
    }

    @Test func guardInLocalModeSparesTheGatewaysOwnConnections() {
        let plan = InterceptionPlan(mode: .local, clients: .init(), entries: [http], gatewayUID: 997)
        let guardBody = Ruleset.guardBody(for: plan)
        #expect(guardBody.contains("type filter hook output priority filter;"))
        #expect(guardBody.contains("meta skuid != 997 ip daddr @dst_http_dexample_v4 tcp dport 80 counter reject with tcp reset"))
    }

    @Test func tproxyRoutingRemovalUndoesEachCommand() {
        let removal = Ruleset.tproxyRoutingRemoval(mark: 0x746c, table: 7468)
        #expect(removal.first == ["-4", "rule", "del", "fwmark", "0x746c", "lookup", "7468"])
        #expect(removal.count == Ruleset.tproxyRouting(mark: 0x746c, table: 7468).count)
        #expect(removal.allSatisfy { !$0.contains("add") && $0.contains("del") })
    }

    @Test func setNamesNeverCollide() {
        let names = ["a-b", "a_b", "a.b", "ab", "a__b", "a_db", "a-_b", "a_-b", "A-b"]
        let sets = names.map {
            Ruleset.setName(
                InterceptionPlan.Entry(
                    name: $0, ipv4: [], ipv6: [], matchPort: 1, upstreamPort: 2, listenPort: 3, denyDirect: false),
                v6: false)
        }
        #expect(Set(sets).count == names.count, "\(sets)")
        #expect(sets[0] == "dst_a_db_v4")
        #expect(sets[1] == "dst_a__b_v4")
        #expect(sets[2] == "dst_a_pb_v4")
    }

    @Test func interfacesInsteadOfNetworks() {
        let plan = InterceptionPlan(mode: .redirect, clients: .init(interfaces: ["lan0"]), entries: [ldap], gatewayUID: 1)
        let body = Ruleset.body(for: plan)
        #expect(body.contains("iifname { \"lan0\" } ip daddr @dst_ldap_v4 tcp dport 389 redirect to :41001"))
        #expect(!body.contains("clients_v4"))
    }

    @Test func tproxyMarksAndDelivers() {
        let plan = InterceptionPlan(
            mode: .tproxy, clients: .init(ipv4: ["198.18.0.0/24"]), entries: [ldap], gatewayUID: 1, tproxyMark: 0x10)
        let body = Ruleset.body(for: plan)
        #expect(body.contains("type filter hook prerouting priority mangle;"))
        #expect(body.contains("tcp dport 389 tproxy ip to :41001 meta mark set 0x10 accept"))
        #expect(!body.contains("redirect"))
    }

    @Test func localModeSkipsTheGatewaysOwnUID() {
        let plan = InterceptionPlan(mode: .local, clients: .init(), entries: [http], gatewayUID: 997)
        let body = Ruleset.body(for: plan)
        #expect(body.contains("type nat hook output priority -100;"))
        #expect(body.contains("meta skuid != 997 ip daddr @dst_http_dexample_v4 tcp dport 80 redirect to :41000"))
        #expect(!body.contains("prerouting"))
    }

    @Test func localModeSkipsTheWorkersUIDsToo() {
        let plan = InterceptionPlan(mode: .local, clients: .init(), entries: [http], gatewayUID: 997, workerUIDs: [995, 997, 1001])
        #expect(Ruleset.body(for: plan).contains("meta skuid != { 995, 997, 1001 } ip daddr @dst_http_dexample_v4 tcp dport 80 redirect to :41000"))
        #expect(Ruleset.guardBody(for: plan).contains("meta skuid != { 995, 997, 1001 } ip daddr @dst_http_dexample_v4 tcp dport 80 counter reject with tcp reset"))
        // Another worker uid is another rule, not an element update.
        var other = plan
        other.workerUIDs = [996]
        #expect(Ruleset.elementUpdate(from: plan, to: other) == nil)
        #expect(Ruleset.elementUpdate(from: plan, to: plan) == "")
    }

    @Test func scriptCreatesMissingTables() {
        let plan = InterceptionPlan(mode: .redirect, clients: .init(ipv4: ["198.18.0.0/24"]), entries: [ldap], gatewayUID: 1)
        let script = Ruleset.script(for: plan)
        let lines = script.split(separator: "\n")
        #expect(lines[1] == "table inet tlsgate {")
        #expect(lines.contains("table inet tlsgate_guard {"))
        #expect(!script.contains("delete"))
        #expect(!script.contains("flush"))
        #expect(Ruleset.removalScript(includingGuard: false) == "table inet tlsgate\ndelete table inet tlsgate\n")
    }

    @Test func replacementScriptDeletesAndRecreatesInOneTransaction() {
        let plan = InterceptionPlan(mode: .redirect, clients: .init(ipv4: ["198.18.0.0/24"]), entries: [ldap], gatewayUID: 1)
        let lines = Ruleset.replacementScript(for: plan).split(separator: "\n")
        #expect(lines[1] == "table inet tlsgate")
        #expect(lines[2] == "delete table inet tlsgate")
        #expect(lines[3] == "table inet tlsgate_guard")
        #expect(lines[4] == "delete table inet tlsgate_guard")
        #expect(lines[5] == "table inet tlsgate {")
    }

    /// Existing tables keep their hooks: rules flushed, kept sets emptied, the rest deleted,
    /// then declared again; never a `delete table`.
    @Test func existingTablesAreUpdatedInPlace() {
        var disabled = ldap
        disabled.intercepted = false
        let plan = InterceptionPlan(
            mode: .redirect, clients: .init(ipv4: ["198.18.0.0/24"]), entries: [http, disabled], gatewayUID: 1)
        let existing: [String: Ruleset.TableContents] = [
            "tlsgate": .init(sets: ["clients_v4", "dst_ldap_v4", "dst_http_dexample_v4", "dst_gone_v4"], chains: ["prerouting", "output"]),
            "tlsgate_guard": .init(sets: ["clients_v4", "dst_ldap_v4"], chains: ["forward"]),
        ]
        let script = Ruleset.script(for: plan, existing: existing)
        let lines = script.split(separator: "\n").map(String.init)
        #expect(!script.contains("delete table"))
        let interception = [
            "flush table inet tlsgate", "flush set inet tlsgate clients_v4",
            // ldap is disabled: no longer intercepted, its set goes from this table ...
            "delete set inet tlsgate dst_ldap_v4", "flush set inet tlsgate dst_http_dexample_v4",
            "delete set inet tlsgate dst_gone_v4", "delete chain inet tlsgate output",
        ]
        #expect(Array(lines[1...6]) == interception)
        // ... and stays in the guard's.
        #expect(Array(lines[7...9]) == [
            "flush table inet tlsgate_guard", "flush set inet tlsgate_guard clients_v4", "flush set inet tlsgate_guard dst_ldap_v4",
        ])
        #expect(lines[10] == "table inet tlsgate {")
        #expect(!lines.contains("delete chain inet tlsgate prerouting"))
        #expect(!lines.contains("delete chain inet tlsgate_guard forward"))
    }

    @Test func tableContentsAreReadFromTheListing() {
        let listing = """
            table inet tlsgate {
            \tset clients_v4 {
            \t\ttype ipv4_addr
            \t\tflags interval
            \t\telements = { 198.18.0.0/24 }
            \t}

            \tset dst_web_v4 {
            \t\ttype ipv4_addr
            \t}

            \tchain prerouting {
            \t\ttype nat hook prerouting priority dstnat; policy accept;
            \t\tip saddr @clients_v4 ip daddr @dst_web_v4 tcp dport 80 redirect to :42273 comment "set x {"
            \t}
            }
            """
        #expect(Ruleset.TableContents.parse(listing) == .init(sets: ["clients_v4", "dst_web_v4"], chains: ["prerouting"]))
    }

    /// An in-place update (a policy removed, one disabled, one added, addresses changed)
    /// leaves exactly what a fresh start with the new plan gives, checked by nft itself in
    /// two throw-away namespaces.
    @Test(.enabled(if: getuid() == 0 || ProcessInfo.processInfo.environment["CI"] != nil,
                   "needs root: applies rulesets in network namespaces (runs in CI)"))
    func root_inPlaceUpdateEndsAsAFreshStart() throws {
        let clients = InterceptionPlan.Clients(ipv4: ["198.18.0.0/24"], ipv6: ["2001:2::/64"])
        let before = InterceptionPlan(mode: .redirect, clients: clients, entries: [http, ldap], gatewayUID: 999)
        var moved = http
        moved.ipv4 = ["203.0.113.0/25", "192.0.2.7/32"]
        moved.listenPort = 42000
        var disabled = ldap
        disabled.intercepted = false
        let added = InterceptionPlan.Entry(
            name: "imap", ipv4: ["198.51.100.9/32"], ipv6: ["2001:db8::9/128"], matchPort: 143, upstreamPort: 993,
            listenPort: 41002, denyDirect: false)
        let after = InterceptionPlan(mode: .redirect, clients: clients, entries: [moved, disabled, added], gatewayUID: 999)
        for ns in ["tgfwa-\(getpid())", "tgfwb-\(getpid())"] {
            _ = try shell(["ip", "netns", "add", ns])
        }
        defer {
            _ = try? shell(["ip", "netns", "del", "tgfwa-\(getpid())"])
            _ = try? shell(["ip", "netns", "del", "tgfwb-\(getpid())"])
        }
        func existing(_ ns: String) throws -> [String: Ruleset.TableContents] {
            var result: [String: Ruleset.TableContents] = [:]
            for table in [Ruleset.tableName, Ruleset.guardTableName] {
                let (status, out) = try capture(["ip", "netns", "exec", ns, NFTables.nftPath, "list", "table", "inet", table])
                if status == 0 { result[table] = Ruleset.TableContents.parse(out) }
            }
            return result
        }
        func apply(_ plan: InterceptionPlan, in ns: String) throws {
            let script = Ruleset.script(for: plan, existing: try existing(ns))
            let status = try shell(["ip", "netns", "exec", ns, NFTables.nftPath, "-f", "-"], input: script)
            #expect(status == 0, "nft refused:\n\(script)")
        }
        try apply(before, in: "tgfwa-\(getpid())")
        #expect(try existing("tgfwa-\(getpid())")[Ruleset.tableName]?.sets.contains("dst_ldap_v4") == true)
        try apply(after, in: "tgfwa-\(getpid())")
        try apply(after, in: "tgfwb-\(getpid())")
        let updated = try capture(["ip", "netns", "exec", "tgfwa-\(getpid())", NFTables.nftPath, "list", "ruleset"]).1
        let fresh = try capture(["ip", "netns", "exec", "tgfwb-\(getpid())", NFTables.nftPath, "list", "ruleset"]).1
        #expect(updated.contains("redirect to :42000"))
        #expect(!updated.contains("203.0.113.0/24"))
        #expect(updated == fresh)
    }

    @Test func addressChangesTouchOnlyTheChangedSetsInBothTables() throws {
        let before = InterceptionPlan(mode: .redirect, clients: .init(ipv4: ["198.18.0.0/24"]), entries: [http, ldap], gatewayUID: 1)
        var after = before
        after.entries[1].ipv4 = ["198.51.100.7/32", "198.51.100.9/32"]
        #expect(Ruleset.elementUpdate(from: before, to: before) == "")
        let added = try #require(Ruleset.elementUpdate(from: before, to: after))
        #expect(added.split(separator: "\n").dropFirst() == [
            "add element inet tlsgate dst_ldap_v4 { 198.51.100.9/32 }",
            "add element inet tlsgate_guard dst_ldap_v4 { 198.51.100.9/32 }",
        ])
        // A lost address: flush and refill, in the same transaction (auto-merge may have merged it).
        var moved = before
        moved.entries[1].ipv4 = ["198.51.100.8/32"]
        #expect(try #require(Ruleset.elementUpdate(from: before, to: moved)).split(separator: "\n").dropFirst() == [
            "flush set inet tlsgate dst_ldap_v4", "add element inet tlsgate dst_ldap_v4 { 198.51.100.8/32 }",
            "flush set inet tlsgate_guard dst_ldap_v4", "add element inet tlsgate_guard dst_ldap_v4 { 198.51.100.8/32 }",
        ])
        // A disabled policy has only its guard set.
        var disabled = before
        disabled.entries[1].intercepted = false
        var disabledAfter = disabled
        disabledAfter.entries[1].ipv4 = ["198.51.100.7/32", "198.51.100.9/32"]
        #expect(try #require(Ruleset.elementUpdate(from: disabled, to: disabledAfter)).split(separator: "\n").dropFirst() == [
            "add element inet tlsgate_guard dst_ldap_v4 { 198.51.100.9/32 }"
        ])
    }

    @Test func anythingBeyondAddressesNeedsTheWholeScript() {
        let before = InterceptionPlan(mode: .redirect, clients: .init(ipv4: ["198.18.0.0/24"]), entries: [http, ldap], gatewayUID: 1)
        var newFamily = before
        newFamily.entries[1].ipv6 = ["2001:db8::7/128"]  // the set does not exist yet
        #expect(Ruleset.elementUpdate(from: before, to: newFamily) == nil)
        var port = before
        port.entries[1].listenPort = 42000
        #expect(Ruleset.elementUpdate(from: before, to: port) == nil)
        var fewer = before
        fewer.entries.removeLast()
        #expect(Ruleset.elementUpdate(from: before, to: fewer) == nil)
        var clients = before
        clients.clients.ipv4 = ["198.18.1.0/24"]
        #expect(Ruleset.elementUpdate(from: before, to: clients) == nil)
    }

    /// Checks the generated script with nft itself (`-c`: parse and validate, apply nothing),
    /// inside a throw-away network namespace.
    @Test(.enabled(if: getuid() == 0 || ProcessInfo.processInfo.environment["CI"] != nil,
                   "needs root: nft -c checks the ruleset against the kernel (runs in CI)"))
    func root_nftAcceptsEveryMode() throws {
        for mode in [InterceptionPlan.Mode.redirect, .tproxy, .local] {
            let plan = InterceptionPlan(
                mode: mode, clients: .init(ipv4: ["198.18.0.0/24"], ipv6: ["2001:2::/64"], interfaces: ["lan0"]),
                entries: [http, ldap], gatewayUID: 999)
            let ns = "tgfw-\(getpid())"
            _ = try shell(["ip", "netns", "add", ns])
            defer { _ = try? shell(["ip", "netns", "del", ns]) }
            let status = try shell(["ip", "netns", "exec", ns, NFTables.nftPath, "-c", "-f", "-"], input: Ruleset.script(for: plan))
            #expect(status == 0, "nft rejected the \(mode) ruleset:\n\(Ruleset.script(for: plan))")
            // The element update applies on top of the applied tables (kernel state: not -c).
            var moved = plan
            moved.entries[0].ipv4 = ["203.0.114.0/24", "203.0.113.0/25"]
            let update = try #require(Ruleset.elementUpdate(from: plan, to: moved))
            let applied = try shell(["ip", "netns", "exec", ns, NFTables.nftPath, "-f", "-"], input: Ruleset.script(for: plan) + update)
            #expect(applied == 0, "nft rejected the element update:\n\(update)")
        }
    }

    private func capture(_ arguments: [String]) throws -> (Int32, String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    private func shell(_ arguments: [String], input: String? = nil) throws -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        let pipe = Pipe()
        process.standardInput = pipe
        try process.run()
        if let input { pipe.fileHandleForWriting.write(Data(input.utf8)) }
        try pipe.fileHandleForWriting.close()
        process.waitUntilExit()
        return process.terminationStatus
    }
}
