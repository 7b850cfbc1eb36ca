/// A TLS protocol version tlsgate can ask OpenSSL for.
public enum TLSVersion: Int, Sendable, Comparable, CustomStringConvertible {
    case tls1_0 = 0x0301
    case tls1_1 = 0x0302
    case tls1_2 = 0x0303
    case tls1_3 = 0x0304

    public static func < (lhs: TLSVersion, rhs: TLSVersion) -> Bool { lhs.rawValue < rhs.rawValue }

    public var description: String {
        switch self {
        case .tls1_0: return "TLSv1"
        case .tls1_1: return "TLSv1.1"
        case .tls1_2: return "TLSv1.2"
        case .tls1_3: return "TLSv1.3"
        }
    }
}

/// Everything a `TLSContext` needs: one per policy, immutable.
///
/// There is deliberately no way to turn verification off: a private server gets a CA file.
public struct TLSClientConfiguration: Sendable, Equatable {
    /// Trust the system store (`/etc/ssl/certs`).
    public var trustSystem: Bool
    /// PEM CA bundles to trust, in addition to (or instead of) the system store.
    public var caFiles: [String]
    /// The lowest protocol version accepted (TLS 1.2 unless a policy says otherwise).
    public var minVersion: TLSVersion
    /// The highest protocol version offered, or nil for OpenSSL's highest.
    public var maxVersion: TLSVersion?
    /// Protocols offered with ALPN, in preference order; empty sends no ALPN extension.
    public var alpn: [String]
    /// How many sessions the resumption cache keeps (one per server and name).
    public var sessionCacheSize: Int

    public init(
        trustSystem: Bool = true,
        caFiles: [String] = [],
        minVersion: TLSVersion = .tls1_2,
        maxVersion: TLSVersion? = nil,
        alpn: [String] = [],
        sessionCacheSize: Int = 4096
    ) {
        self.trustSystem = trustSystem
        self.caFiles = caFiles
        self.minVersion = minVersion
        self.maxVersion = maxVersion
        self.alpn = alpn
        self.sessionCacheSize = sessionCacheSize
    }

    /// Where the system trust store lives on Debian.
    public static let systemCAFile = "/etc/ssl/certs/ca-certificates.crt"
    public static let systemCADirectory = "/etc/ssl/certs"
}

/// What the server is checked against: a DNS name (also sent as SNI) or an IP address
/// (checked against IP SANs; no SNI, as RFC 6066 forbids literal addresses there).
public enum TLSPeerIdentity: Sendable, Equatable, CustomStringConvertible {
    case dnsName(String)
    case ipAddress(String)

    public var description: String {
        switch self {
        case .dnsName(let name): return name
        case .ipAddress(let address): return address
        }
    }
}

/// What a finished handshake agreed on.
public struct TLSHandshakeInfo: Sendable, Equatable {
    public let version: String
    public let cipher: String
    public let resumed: Bool
    public let alpn: String?

    public init(version: String, cipher: String, resumed: Bool, alpn: String?) {
        self.version = version
        self.cipher = cipher
        self.resumed = resumed
        self.alpn = alpn
    }
}
