import Testing

@testable import TLSGateFirewall

@Suite struct ConntrackTests {
    let web = InterceptionPlan.Entry(
        name: "web", ipv4: ["203.0.113.0/24", "198.51.100.7/32"], ipv6: ["2001:db8:1::/48"], matchPort: 80,
        upstreamPort: 443, listenPort: 41000, denyDirect: false)

    @Test func oneDeletionPerDestinationNetworkAndMatchPort() {
        var disabled = web
        disabled.name = "web2"
        disabled.intercepted = false
        disabled.ipv4 = ["203.0.113.0/24"]   // the same network and port: asked once
        disabled.ipv6 = []
        let plan = InterceptionPlan(mode: .redirect, clients: .init(ipv4: ["198.18.0.0/24"]), entries: [web, disabled], gatewayUID: 1)
        #expect(Conntrack.deletions(for: plan) == [
            ["-D", "-f", "ipv4", "-p", "tcp", "--orig-dst", "203.0.113.0", "--mask-dst", "255.255.255.0",
             "--orig-port-dst", "80", "--dst-nat"],
            ["-D", "-f", "ipv4", "-p", "tcp", "--orig-dst", "198.51.100.7", "--mask-dst", "255.255.255.255",
             "--orig-port-dst", "80", "--dst-nat"],
            ["-D", "-f", "ipv6", "-p", "tcp", "--orig-dst", "2001:db8:1::", "--mask-dst", "ffff:ffff:ffff:0:0:0:0:0",
             "--orig-port-dst", "80", "--dst-nat"],
        ])
    }

    @Test func tproxyKeepsNoNATSoNothingIsDeleted() {
        let plan = InterceptionPlan(mode: .tproxy, clients: .init(ipv4: ["198.18.0.0/24"]), entries: [web], gatewayUID: 1)
        #expect(Conntrack.deletions(for: plan).isEmpty)
        let local = InterceptionPlan(mode: .local, clients: .init(), entries: [web], gatewayUID: 1)
        #expect(Conntrack.deletions(for: local).count == 3)
    }

    @Test(arguments: [
        ("10.0.0.0/8", false, "255.0.0.0"), ("10.1.2.3", false, "255.255.255.255"), ("0.0.0.0/0", false, "0.0.0.0"),
        ("10.0.0.0/12", false, "255.240.0.0"), ("2001:db8::/33", true, "ffff:ffff:8000:0:0:0:0:0"),
        ("::/0", true, "0:0:0:0:0:0:0:0"), ("2001:db8::1", true, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
    ])
    func masks(network: String, v6: Bool, mask: String) {
        #expect(Conntrack.addressAndMask(network, v6: v6)?.1 == mask)
    }

    @Test func badNetworksAreSkipped() {
        #expect(Conntrack.addressAndMask("10.0.0.0/33", v6: false) == nil)
        #expect(Conntrack.addressAndMask("/8", v6: false) == nil)
        #expect(Conntrack.addressAndMask("10.0.0.0/x", v6: false) == nil)
    }

    @Test func deletedCountIsReadFromTheMessage() {
        #expect(Conntrack.deletedCount("conntrack v1.4.7 (conntrack-tools): 12 flow entries have been deleted.\n") == 12)
        #expect(Conntrack.deletedCount("conntrack v1.4.7 (conntrack-tools): 0 flow entries have been deleted.") == 0)
        #expect(Conntrack.deletedCount("conntrack v1.4.7 (conntrack-tools): Operation not permitted") == nil)
    }
}
