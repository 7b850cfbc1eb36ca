import TLSGatePolicy

/// Decides whether a redirected connection may be relayed: never an open relay, never a
/// loop back into the gateway. Pure, so it is tested without sockets.
public struct DestinationCheck: Sendable {
    public enum Verdict: Equatable, Sendable {
        case allow
        case refuse(RelayReason, String)
    }

    public let policy: Policy
    /// Addresses of the gateway's own interfaces.
    public let localAddresses: Set<IPAddress>
    /// The destinations allowed: the policy's networks, or the newer list the supervisor
    /// sent when a `[match] hosts` name's addresses changed.
    public let networks: [IPNetwork]

    public init(policy: Policy, localAddresses: Set<IPAddress>, networks: [IPNetwork]? = nil) {
        self.policy = policy
        self.localAddresses = localAddresses
        self.networks = networks ?? policy.match.networks
    }

    /// The same with the gateway's addresses as text (`LocalAddresses.current()`).
    public init(policy: Policy, localAddresses: Set<String>, networks: [IPNetwork]? = nil) {
        self.init(policy: policy, localAddresses: Self.addresses(localAddresses), networks: networks)
    }

    /// The gateway's addresses from their text; text that is not an address is left out (it
    /// could never equal a destination).
    public static func addresses(_ texts: Set<String>) -> Set<IPAddress> {
        Set(texts.compactMap(IPAddress.init))
    }

    /// The same check with the addresses as text (tests, `tlsgate probe`); text that is not
    /// an address counts as no address.
    public func evaluate(original: String?, originalPort: Int, socketLocal: String?, socketLocalPort: Int) -> Verdict {
        evaluate(
            original: original.flatMap(IPAddress.init), originalPort: originalPort,
            socketLocal: socketLocal.flatMap(IPAddress.init), socketLocalPort: socketLocalPort)
    }

    /// - Parameters:
    ///   - original: the original destination address, or nil when none could be read.
    ///   - originalPort: its port.
    ///   - socketLocal / socketLocalPort: the accepting socket's own address.
    public func evaluate(original: IPAddress?, originalPort: Int, socketLocal: IPAddress?, socketLocalPort: Int) -> Verdict {
        guard let address = original else {
            return .refuse(.notRedirected, "no original destination: the connection was not redirected by the firewall")
        }
        let unmapped = address.unmapped
        if let local = socketLocal, local.unmapped == unmapped, originalPort == socketLocalPort {
            return .refuse(.notRedirected, "connection made straight to the listen port \(socketLocalPort), not redirected")
        }
        if Self.isLoopbackOrUnspecified(unmapped) || localAddresses.contains(unmapped) || localAddresses.contains(address) {
            return .refuse(.destinationIsGateway, "original destination \(unmapped) is the gateway itself")
        }
        guard originalPort == Int(policy.match.port) else {
            return .refuse(
                .destinationNotInPolicy,
                "original port \(originalPort) is not the policy's match port \(policy.match.port)")
        }
        guard networks.contains(where: { $0.contains(address) || $0.contains(unmapped) }) else {
            return .refuse(.destinationNotInPolicy, "\(unmapped) is not in the policy's networks")
        }
        return .allow
    }

    static func isLoopbackOrUnspecified(_ address: IPAddress) -> Bool {
        let b = address.bytes
        if b.count == 4 { return b[0] == 127 || b.allSatisfy { $0 == 0 } }
        let zeros = b[0..<15].allSatisfy { $0 == 0 }
        return zeros && (b[15] == 1 || b[15] == 0)
    }
}
