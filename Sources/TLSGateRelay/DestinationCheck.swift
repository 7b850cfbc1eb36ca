import TLSGatePolicy

/// Decides whether a redirected connection may be relayed: never an open relay, never a
/// loop back into the gateway. Pure, so it is tested without sockets.
public struct DestinationCheck: Sendable {
    public enum Verdict: Equatable, Sendable {
        case allow
        case refuse(RelayReason, String)
    }

    public let policy: Policy
    /// Addresses of the gateway's own interfaces, as text.
    public let localAddresses: Set<String>
    /// The destinations allowed: the policy's networks, or the newer list the supervisor
    /// sent when a `[match] hosts` name's addresses changed.
    public let networks: [IPNetwork]

    public init(policy: Policy, localAddresses: Set<String>, networks: [IPNetwork]? = nil) {
        self.policy = policy
        self.localAddresses = localAddresses
        self.networks = networks ?? policy.match.networks
    }

    /// - Parameters:
    ///   - original: the original destination address as text, or nil when none could be read.
    ///   - originalPort: its port.
    ///   - socketLocal / socketLocalPort: the accepting socket's own address.
    public func evaluate(original: String?, originalPort: Int, socketLocal: String?, socketLocalPort: Int) -> Verdict {
        guard let original, let address = IPAddress(original) else {
            return .refuse(.notRedirected, "no original destination: the connection was not redirected by the firewall")
        }
        let unmapped = address.unmapped
        if let socketLocal, let local = IPAddress(socketLocal), local.unmapped == unmapped, originalPort == socketLocalPort {
            return .refuse(.notRedirected, "connection made straight to the listen port \(socketLocalPort), not redirected")
        }
        if Self.isLoopbackOrUnspecified(unmapped) || localAddresses.contains(unmapped.description)
            || localAddresses.contains(address.description)
        {
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
