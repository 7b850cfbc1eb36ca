/// `[match]`: which connections a policy takes over.
public struct MatchRule: Sendable, Hashable, Codable {
    /// `networks`: destination networks, IPv4 and IPv6. Required unless `hosts` is given.
    public let networks: [IPNetwork]
    /// `hosts`: destination DNS names, resolved later by the supervisor. Stored lowercased,
    /// without a trailing dot. Required unless `networks` is given.
    public let hosts: [String]
    /// `port`: the plain-text port clients dial (port 1). Required, 1...65535.
    public let port: UInt16

    public init(networks: [IPNetwork], hosts: [String], port: UInt16) {
        self.networks = networks
        self.hosts = hosts
        self.port = port
    }
}
