/// `[upstream] starttls`: an application protocol whose own in-band upgrade the gateway
/// speaks to the server before the TLS handshake.
public enum StartTLSProtocol: String, Sendable, Hashable, Codable, CaseIterable {
    /// SMTP STARTTLS (RFC 3207): ports 25 and 587.
    case smtp
    /// IMAP STARTTLS (RFC 3501): port 143.
    case imap
    /// POP3 STLS (RFC 2595): port 110.
    case pop3
    /// LDAP StartTLS extended operation (RFC 4511 §4.14): port 389.
    case ldap
    /// PostgreSQL SSLRequest (protocol 3): port 5432. The client's own SSLRequest or
    /// GSSENCRequest is answered "N" by the gateway.
    case postgres
    /// PostgreSQL 17 direct TLS: no SSLRequest, the TLS handshake at once with ALPN
    /// `postgresql` (required). The client's SSLRequest/GSSENCRequest is still answered "N".
    case postgresDirect = "postgres-direct"
    /// MySQL/MariaDB CLIENT_SSL: the server's greeting, an SSL request, then TLS; sequence
    /// numbers renumbered during authentication. Port 3306.
    case mysql

    /// The match ports this protocol usually runs on: any other gets a warning from `check`.
    public var usualPorts: [UInt16] {
        switch self {
        case .smtp: return [25, 587, 2525]
        case .imap: return [143]
        case .pop3: return [110]
        case .ldap: return [389]
        case .postgres, .postgresDirect: return [5432]
        case .mysql: return [3306]
        }
    }

    /// The ALPN protocol the TLS handshake must offer and the server must select; it
    /// replaces `[tls] alpn` (which may only repeat it).
    public var requiredALPN: String? { self == .postgresDirect ? "postgresql" : nil }

    /// "SMTP", "IMAP", "POP3": how messages name the protocol.
    public var displayName: String {
        switch self {
        case .postgres: return "PostgreSQL"
        case .postgresDirect: return "PostgreSQL direct TLS"
        case .mysql: return "MySQL"
        default: return rawValue.uppercased()
        }
    }
}
