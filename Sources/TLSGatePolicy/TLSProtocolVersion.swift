/// A TLS protocol version, written in files as `"1.2"` or `"1.3"`.
///
/// 1.0 and 1.1 are below `floor`: accepted for a legacy server, with a warning, and the
/// policy then runs OpenSSL at security level 0 (`TLSRule.isLegacy`).
public enum TLSProtocolVersion: String, Sendable, Hashable, Codable, Comparable, CaseIterable {
    case tls1_0 = "1.0"
    case tls1_1 = "1.1"
    case tls1_2 = "1.2"
    case tls1_3 = "1.3"

    /// The lowest version allowed without a warning.
    public static let floor: TLSProtocolVersion = .tls1_2

    public static func < (lhs: TLSProtocolVersion, rhs: TLSProtocolVersion) -> Bool {
        lhs.order < rhs.order
    }

    private var order: Int {
        switch self {
        case .tls1_0: return 0
        case .tls1_1: return 1
        case .tls1_2: return 2
        case .tls1_3: return 3
        }
    }
}
