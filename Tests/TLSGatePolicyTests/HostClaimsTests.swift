import Testing

@testable import TLSGatePolicy

@Suite struct HostClaimsTests {
    func policy(_ name: String, networks: [String] = [], hosts: [String] = [], port: UInt16 = 80) -> Policy {
        Policy(
            name: name, sourcePath: "\(name).toml",
            match: MatchRule(networks: networks.map { IPNetwork($0)! }, hosts: hosts, port: port),
            upstream: UpstreamRule(port: 443, serverName: .fixed("\(name).example")))
    }

    let dns: [String: [String]] = [
        "api.example.com": ["203.0.113.7", "198.51.100.9"],
        "cdn.example.com": ["198.51.100.9", "2001:db8::9"],
        "v6.example.com": ["2001:db8::1"],
    ]

    func lookup(_ host: String) -> [IPAddress] { (dns[host] ?? []).map { IPAddress($0)! } }

    @Test func hostsBecomeHostNetworks() {
        let (policies, conflicts) = HostClaims.resolve([policy("a", hosts: ["v6.example.com"])], addresses: lookup)
        #expect(policies[0].match.networks.map(\.description) == ["2001:db8::1/128"])
        #expect(conflicts.isEmpty)
    }

    @Test func anotherPolicysLiteralNetworkKeepsItsAddress() {
        // "strict" pins 203.0.113.0/24; "loose" names a host that resolves into it.
        let sources = [policy("loose", hosts: ["api.example.com"]), policy("strict", networks: ["203.0.113.0/24"])]
        let (policies, conflicts) = HostClaims.resolve(sources, addresses: lookup)
        #expect(policies.map(\.name) == ["loose", "strict"])
        #expect(policies[0].match.networks.map(\.description) == ["198.51.100.9/32"])
        #expect(policies[1].match.networks.map(\.description) == ["203.0.113.0/24"])
        #expect(conflicts.count == 1)
        #expect(
            conflicts.first?.description
                == "policy loose: host api.example.com resolves to 203.0.113.7, which is in policy strict's networks 203.0.113.0/24 on port 80; it stays with policy strict")
    }

    @Test func twoPoliciesHostsGoToTheFirstByNameWhateverTheOrder() {
        let a = policy("a", hosts: ["api.example.com"])
        let b = policy("b", hosts: ["cdn.example.com"])
        for sources in [[a, b], [b, a]] {
            let (policies, conflicts) = HostClaims.resolve(sources, addresses: lookup)
            let byName = Dictionary(uniqueKeysWithValues: policies.map { ($0.name, $0.match.networks.map(\.description)) })
            #expect(byName["a"] == ["203.0.113.7/32", "198.51.100.9/32"])
            #expect(byName["b"] == ["2001:db8::9/128"])
            #expect(conflicts.map(\.owner) == ["a"])
            #expect(conflicts.first?.policy == "b")
        }
    }

    @Test func otherPortsDoNotCompete() {
        let sources = [policy("web", hosts: ["api.example.com"]), policy("ldap", networks: ["203.0.113.0/24"], port: 389)]
        let (policies, conflicts) = HostClaims.resolve(sources, addresses: lookup)
        #expect(policies[0].match.networks.count == 2)
        #expect(conflicts.isEmpty)
    }

    @Test func anUnresolvedHostAddsNothing() {
        let (policies, _) = HostClaims.resolve([policy("a", networks: ["192.0.2.0/24"], hosts: ["gone.example"])], addresses: lookup)
        #expect(policies[0].match.networks.map(\.description) == ["192.0.2.0/24"])
    }
}
