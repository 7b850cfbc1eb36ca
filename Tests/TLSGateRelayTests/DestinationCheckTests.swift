import Testing
import TLSGatePolicy

@testable import TLSGateRelay

/// The policy both suites check against: port 80, two networks.
private let httpPolicy = Policy(
    name: "http", sourcePath: "Policies/http.toml",
    match: MatchRule(networks: [IPNetwork("203.0.113.0/24")!, IPNetwork("2001:db8::/32")!], hosts: [], port: 80),
    upstream: UpstreamRule(port: 443, serverName: .fixed("api.example.com")))

@Suite struct DestinationCheckTests {
    let policy = httpPolicy

    var check: DestinationCheck {
        DestinationCheck(policy: policy, localAddresses: ["198.18.0.1", "198.19.0.1", "2001:2::1"])
    }

    @Test func redirectedConnectionInPolicyIsAllowed() {
        #expect(check.evaluate(original: "203.0.113.7", originalPort: 80, socketLocal: "198.18.0.1", socketLocalPort: 40000) == .allow)
        #expect(check.evaluate(original: "2001:db8::7", originalPort: 80, socketLocal: "2001:2::1", socketLocalPort: 40000) == .allow)
        // A dual-stack socket reports IPv4 destinations as mapped addresses.
        #expect(check.evaluate(original: "::ffff:203.0.113.7", originalPort: 80, socketLocal: "::ffff:198.18.0.1", socketLocalPort: 40000) == .allow)
    }

    @Test func newerDestinationsFromTheSupervisorReplaceThePolicys() {
        let moved = DestinationCheck(
            policy: policy, localAddresses: Set<IPAddress>(), networks: [IPNetwork("198.51.100.9")!, IPNetwork("2001:db8::/32")!])
        #expect(moved.evaluate(original: "198.51.100.9", originalPort: 80, socketLocal: "198.18.0.1", socketLocalPort: 40000) == .allow)
        guard case .refuse(.destinationNotInPolicy, _) = moved.evaluate(
            original: "203.0.113.7", originalPort: 80, socketLocal: "198.18.0.1", socketLocalPort: 40000)
        else {
            Issue.record("an address that left the destinations is still allowed")
            return
        }
    }

    @Test func noOriginalDestinationIsRefused() {
        guard case .refuse(let reason, _) = check.evaluate(original: nil, originalPort: 0, socketLocal: "198.18.0.1", socketLocalPort: 40000) else {
            Issue.record("allowed")
            return
        }
        #expect(reason == .notRedirected)
    }

    @Test func directConnectionToTheListenPortIsRefused() {
        // conntrack without NAT reports the socket's own address as the original one.
        let verdict = check.evaluate(original: "198.18.0.1", originalPort: 40000, socketLocal: "198.18.0.1", socketLocalPort: 40000)
        guard case .refuse(let reason, let detail) = verdict else {
            Issue.record("allowed")
            return
        }
        #expect(reason == .notRedirected)
        #expect(detail.contains("40000"))
    }

    @Test(arguments: ["198.19.0.1", "127.0.0.1", "::1", "0.0.0.0", "::ffff:127.0.0.1", "2001:2::1"])
    func theGatewayItselfIsRefused(address: String) {
        let verdict = check.evaluate(original: address, originalPort: 80, socketLocal: "198.18.0.1", socketLocalPort: 40000)
        guard case .refuse(let reason, _) = verdict else {
            Issue.record("\(address) allowed")
            return
        }
        #expect(reason == .destinationIsGateway)
    }

    @Test func outsideThePolicyIsRefused() {
        for (address, port) in [("198.51.100.7", 80), ("203.0.113.7", 8080), ("2001:db9::1", 80)] {
            let verdict = check.evaluate(original: address, originalPort: port, socketLocal: "198.18.0.1", socketLocalPort: 40000)
            guard case .refuse(let reason, _) = verdict else {
                Issue.record("\(address):\(port) allowed")
                continue
            }
            #expect(reason == .destinationNotInPolicy)
        }
    }
}

/// The worker checks addresses as values made from the sockets' bytes (IPv4, IPv6, and
/// IPv4-mapped on its dual-stack socket): each case with the verdict it must give.
@Suite struct DestinationCheckAddressValueTests {
    let policy = httpPolicy

    enum Expected: Sendable { case allow, notRedirected, destinationIsGateway, destinationNotInPolicy }

    @Test(arguments: [
        ("203.0.113.7", 80, "198.18.0.1", 40000, Expected.allow),
        ("::ffff:203.0.113.7", 80, "::ffff:198.18.0.1", 40000, .allow),
        ("2001:db8::7", 80, "2001:2::1", 40000, .allow),
        // The gateway's own addresses, plain and mapped; loopback and unspecified.
        ("198.19.0.1", 80, "198.18.0.1", 40000, .destinationIsGateway),
        ("::ffff:198.19.0.1", 80, "::ffff:198.18.0.1", 40000, .destinationIsGateway),
        ("2001:2::1", 80, "2001:2::1", 40000, .destinationIsGateway),
        ("127.0.0.1", 80, "198.18.0.1", 40000, .destinationIsGateway),
        ("::ffff:127.0.0.1", 80, "::ffff:198.18.0.1", 40000, .destinationIsGateway),
        ("::", 80, "2001:2::1", 40000, .destinationIsGateway),
        // Straight to the listen port (no NAT): the same address and port, mapped or not.
        ("198.18.0.1", 40000, "::ffff:198.18.0.1", 40000, .notRedirected),
        ("::ffff:198.18.0.1", 40000, "198.18.0.1", 40000, .notRedirected),
        ("2001:2::1", 40000, "2001:2::1", 40000, .notRedirected),
        ("not an address", 80, "198.18.0.1", 40000, .notRedirected),
        // Outside the policy: another port, another network.
        ("203.0.113.7", 81, "198.18.0.1", 40000, .destinationNotInPolicy),
        ("198.51.100.1", 80, "198.18.0.1", 40000, .destinationNotInPolicy),
        ("::ffff:198.51.100.1", 80, "::ffff:198.18.0.1", 40000, .destinationNotInPolicy),
        ("2001:db9::1", 80, "2001:2::1", 40000, .destinationNotInPolicy),
    ])
    func eachCaseGivesItsVerdict(original: String, port: Int, local: String, localPort: Int, expected: Expected) {
        let check = DestinationCheck(
            policy: policy,
            localAddresses: Set([IPAddress("198.18.0.1")!, IPAddress("198.19.0.1")!, IPAddress("2001:2::1")!]))
        let verdict = check.evaluate(
            original: IPAddress(original), originalPort: port, socketLocal: IPAddress(local), socketLocalPort: localPort)
        switch (verdict, expected) {
        case (.allow, .allow), (.refuse(.notRedirected, _), .notRedirected),
            (.refuse(.destinationIsGateway, _), .destinationIsGateway),
            (.refuse(.destinationNotInPolicy, _), .destinationNotInPolicy):
            break
        default:
            Issue.record("\(original) port \(port) via \(local):\(localPort): \(verdict), expected \(expected)")
        }
    }

    /// TPROXY: no socket address to compare (the destination is the socket's own address);
    /// the gateway's own address is refused, plain or IPv4-mapped.
    @Test(arguments: ["198.18.0.1", "::ffff:198.18.0.1"])
    func withoutASocketAddressTheGatewaysOwnIsRefused(own: String) {
        let check = DestinationCheck(policy: policy, localAddresses: Set([IPAddress("198.18.0.1")!]))
        #expect(check.evaluate(original: IPAddress("203.0.113.7"), originalPort: 80, socketLocal: nil, socketLocalPort: 0) == .allow)
        guard case .refuse(.destinationIsGateway, _) = check.evaluate(
            original: IPAddress(own), originalPort: 80, socketLocal: nil, socketLocalPort: 0)
        else {
            Issue.record("\(own), the gateway's own address, was not refused")
            return
        }
    }

    @Test func textThatIsNotAnAddressIsLeftOutOfTheGatewaysAddresses() {
        let check = DestinationCheck(policy: policy, localAddresses: ["198.19.0.1", "eth0", "fe80::1%eth0"])
        #expect(check.localAddresses == Set([IPAddress("198.19.0.1")!]))
    }
}
