/// `[firewall]`: extra nftables rules for this policy.
public struct FirewallRule: Sendable, Hashable, Codable {
    /// `deny_direct`: drop LAN traffic to (match destinations, upstream port), so only the
    /// gateway speaks TLS to them. Default false.
    public let denyDirect: Bool

    public init(denyDirect: Bool = false) {
        self.denyDirect = denyDirect
    }
}
