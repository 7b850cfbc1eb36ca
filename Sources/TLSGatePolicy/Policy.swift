/// One validated policy file: which destinations it takes over and how to reach and
/// verify them. Built only by `PolicyLoader` (or by tests); immutable; encodes to JSON
/// for the workers, which never re-parse the TOML.
public struct Policy: Sendable, Hashable, Codable {
    /// The file stem (`http-example` for `http-example.toml`); `[A-Za-z0-9._-]+`.
    /// Used in logs and nftables set names.
    public let name: String
    /// The file the policy was read from, as the caller gave it.
    public let sourcePath: String
    public let match: MatchRule
    public let upstream: UpstreamRule
    public let tls: TLSRule
    public let limits: Limits
    public let firewall: FirewallRule

    public init(
        name: String, sourcePath: String, match: MatchRule, upstream: UpstreamRule,
        tls: TLSRule = TLSRule(), limits: Limits = Limits(), firewall: FirewallRule = FirewallRule()
    ) {
        self.name = name
        self.sourcePath = sourcePath
        self.match = match
        self.upstream = upstream
        self.tls = tls
        self.limits = limits
        self.firewall = firewall
    }
}
