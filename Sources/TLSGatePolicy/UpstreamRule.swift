/// `[upstream]`: how to reach the real server over TLS.
public struct UpstreamRule: Sendable, Hashable, Codable {
    /// `port`: the server's TLS port (port 2). Required, 1...65535.
    public let port: UInt16
    /// `server_name`: SNI and identity to verify: a DNS name, an IP literal, or `"http-host"`. Required.
    public let serverName: ServerName
    /// `connect_timeout`: how long to wait for the TCP connection. Default 5s, 100ms...5m.
    public let connectTimeout: TimeSpan
    /// `allowed_names`: with `server_name = "http-host"`, the Host names a client may ask
    /// for (`*.example.com` matches one more label). Required then; not allowed otherwise.
    public let allowedNames: [String]
    /// `on_failure`: what the client gets when the server cannot be reached or verified.
    public let onFailure: FailureAction
    /// `host_header_timeout`: http-host only; how long to wait for the request head. Default 5s, 100ms...1m.
    public let hostHeaderTimeout: TimeSpan
    /// `max_header_bytes`: http-host only; the largest request head read. Default 8192, 512...65536.
    public let maxHeaderBytes: Int
    /// `starttls`: the protocol whose own upgrade the gateway speaks on the server's plain
    /// port before TLS (`upstream.port` may then equal `match.port`). nil: direct TLS.
    public let starttls: StartTLSProtocol?
    /// `ehlo_name`: `starttls = "smtp"` only: the name the gateway gives in `EHLO` (a DNS
    /// name, lowercased). nil: the address literal of its own end of the connection.
    public let ehloName: String?

    public enum FailureAction: String, Sendable, Hashable, Codable, CaseIterable {
        /// Close the client's connection (default).
        case close
        /// Reset it (RST), so the client sees an error at once.
        case reset
        /// Answer `502 Bad Gateway` naming the policy and the reason (HTTP policies).
        case http502 = "http-502"
    }

    /// The match ports `on_failure = "http-502"` is meant for: HTTP's, and the usual
    /// alternatives (proxies, development servers). Any other port gets a warning.
    public static let httpPorts: [UInt16] = [80, 3128, 8000, 8008, 8080, 8888]

    public static let defaultConnectTimeout = TimeSpan.seconds(5)
    public static let connectTimeoutRange = TimeSpan(milliseconds: 100)...TimeSpan.minutes(5)
    public static let defaultHostHeaderTimeout = TimeSpan.seconds(5)
    public static let hostHeaderTimeoutRange = TimeSpan(milliseconds: 100)...TimeSpan.minutes(1)
    public static let defaultMaxHeaderBytes = 8192
    public static let maxHeaderBytesRange = 512...65536

    public init(
        port: UInt16, serverName: ServerName, connectTimeout: TimeSpan = defaultConnectTimeout,
        allowedNames: [String] = [], onFailure: FailureAction = .close,
        hostHeaderTimeout: TimeSpan = defaultHostHeaderTimeout, maxHeaderBytes: Int = defaultMaxHeaderBytes,
        starttls: StartTLSProtocol? = nil, ehloName: String? = nil
    ) {
        self.starttls = starttls
        self.ehloName = ehloName
        self.port = port
        self.serverName = serverName
        self.connectTimeout = connectTimeout
        self.allowedNames = allowedNames
        self.onFailure = onFailure
        self.hostHeaderTimeout = hostHeaderTimeout
        self.maxHeaderBytes = maxHeaderBytes
    }
}
