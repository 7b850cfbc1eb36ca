import Testing
import TLSGatePolicy

@testable import TLSGateRelay

@Suite struct DestinationCheckTests {
    let policy = Policy(
        name: "http", sourcePath: "Policies/http.toml",
        match: MatchRule(
            networks: [IPNetwork("203.0.113.0/24")!, IPNetwork("2001:db8::/32")!], hosts: [], port: 80),
        upstream: UpstreamRule(port: 443, serverName: .fixed("api.example.com")))

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

/// The worker checks addresses as values made from the sockets' bytes; the text form above
/// must give the same verdict for every case.
@Suite struct DestinationCheckAddressValueTests {
    let policy = Policy(
        name: "http", sourcePath: "Policies/http.toml",
        match: MatchRule(
            networks: [IPNetwork("203.0.113.0/24")!, IPNetwork("2001:db8::/32")!], hosts: [], port: 80),
        upstream: UpstreamRule(port: 443, serverName: .fixed("api.example.com")))

    @Test(arguments: [
        ("203.0.113.7", 80, "198.18.0.1", 40000), ("::ffff:203.0.113.7", 80, "::ffff:198.18.0.1", 40000),
        ("2001:db8::7", 80, "2001:2::1", 40000), ("198.19.0.1", 80, "198.18.0.1", 40000),
        ("::ffff:198.19.0.1", 80, "::ffff:198.18.0.1", 40000), ("2001:2::1", 80, "2001:2::1", 40000),
        ("198.18.0.1", 40000, "::ffff:198.18.0.1", 40000), ("127.0.0.1", 80, "198.18.0.1", 40000),
        ("203.0.113.7", 81, "198.18.0.1", 40000), ("198.51.100.1", 80, "198.18.0.1", 40000),
        ("not an address", 80, "198.18.0.1", 40000),
    ])
    func valuesAndTextAgree(original: String, port: Int, local: String, localPort: Int) {
        let text = DestinationCheck(policy: policy, localAddresses: ["198.18.0.1", "198.19.0.1", "2001:2::1"])
        let values = DestinationCheck(
            policy: policy,
            localAddresses: Set([IPAddress("198.18.0.1")!, IPAddress("198.19.0.1")!, IPAddress("2001:2::1")!]))
        let expected = text.evaluate(original: original, originalPort: port, socketLocal: local, socketLocalPort: localPort)
        let got = values.evaluate(
            original: IPAddress(original), originalPort: port, socketLocal: IPAddress(local), socketLocalPort: localPort)
        #expect(got == expected)
    }

    @Test func aMappedDestinationOfTheGatewayIsRefused() {
        let check = DestinationCheck(policy: policy, localAddresses: Set([IPAddress("198.19.0.1")!]))
        guard case .refuse(.destinationIsGateway, _) = check.evaluate(
            original: IPAddress("::ffff:198.19.0.1"), originalPort: 80, socketLocal: nil, socketLocalPort: 0)
        else {
            Issue.record("a mapped address of the gateway itself was not refused")
            return
        }
    }

    @Test func textThatIsNotAnAddressIsLeftOutOfTheGatewaysAddresses() {
        let check = DestinationCheck(policy: policy, localAddresses: ["198.19.0.1", "eth0", "fe80::1%eth0"])
        #expect(check.localAddresses == Set([IPAddress("198.19.0.1")!]))
    }
}
