/// `[upstream]`: how to reach the real server over TLS.
public struct UpstreamRule: Sendable, Hashable, Codable {
    /// `port`: the server's TLS port (port 2). Required, 1...65535.
    public let port: UInt16
    /// `server_name`: SNI and identity to verify: a DNS name, an IP literal, or `"http-host"`. Required.
    public let serverName: ServerName
    /// `connect_timeout`: how long to wait for the TCP connection. Default 5s, 100ms...5m.
    public let connectTimeout: TimeSpan

    public static let defaultConnectTimeout = TimeSpan.seconds(5)
    public static let connectTimeoutRange = TimeSpan(milliseconds: 100)...TimeSpan.minutes(5)

    public init(port: UInt16, serverName: ServerName, connectTimeout: TimeSpan = defaultConnectTimeout) {
        self.port = port
        self.serverName = serverName
        self.connectTimeout = connectTimeout
    }
}
