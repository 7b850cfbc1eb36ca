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

    @Test func scriptReplacesTheTableInOneTransaction() {
        let plan = InterceptionPlan(mode: .redirect, clients: .init(ipv4: ["198.18.0.0/24"]), entries: [ldap], gatewayUID: 1)
        let lines = Ruleset.script(for: plan).split(separator: "\n")
        #expect(lines[1] == "table inet tlsgate")
        #expect(lines[2] == "delete table inet tlsgate")
        #expect(lines[3] == "table inet tlsgate_guard")
        #expect(lines[4] == "delete table inet tlsgate_guard")
        #expect(lines[5] == "table inet tlsgate {")
        #expect(lines.contains("table inet tlsgate_guard {"))
        #expect(Ruleset.removalScript(includingGuard: false) == "table inet tlsgate\ndelete table inet tlsgate\n")
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
