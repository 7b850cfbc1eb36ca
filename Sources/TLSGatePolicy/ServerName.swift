/// The name tlsgate sends as SNI and verifies the server's certificate against.
public enum ServerName: Sendable, Hashable, Codable, CustomStringConvertible {
    /// A fixed DNS name or IP literal from the policy (DNS names are stored lowercased).
    case fixed(String)
    /// Take the name from the client's HTTP `Host` header (`"http-host"` in the file).
    case httpHost

    /// The spelling in a policy file that selects `httpHost`.
    public static let httpHostKeyword = "http-host"

    /// The name, or `http-host`.
    public var description: String {
        switch self {
        case .fixed(let name): return name
        case .httpHost: return Self.httpHostKeyword
        }
    }
}
