import TLSGatePolicy

extension TLSProtocolVersion {
    /// The version's number for OpenSSL (`SSL_CTX_set_min_proto_version`).
    var openSSLVersion: Int32 {
        switch self {
        case .tls1_0: return 0x0301
        case .tls1_1: return 0x0302
        case .tls1_2: return 0x0303
        case .tls1_3: return 0x0304
        }
    }

    /// OpenSSL's name for it, as in its messages and `SSL_get_version`.
    var openSSLName: String {
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
    public var minVersion: TLSProtocolVersion
    /// The highest protocol version offered, or nil for OpenSSL's highest.
    public var maxVersion: TLSProtocolVersion?
    /// Protocols offered with ALPN, in preference order; empty sends no ALPN extension.
    public var alpn: [String]
    /// Fail the handshake when the server selects no ALPN protocol.
    public var alpnRequired: Bool
    /// How many sessions the resumption cache keeps (one per server and name).
    public var sessionCacheSize: Int
    /// The longest chain accepted (intermediates between leaf and trust anchor).
    public var verifyDepth: Int
    /// Other names (DNS names, wildcards, IP literals) the certificate may carry instead
    /// of the expected identity.
    public var acceptedNames: [String]
    /// SHA-256 digests of SubjectPublicKeyInfo (32 bytes each): when not empty, some
    /// certificate of the verified chain must have one of them.
    public var pins: [[UInt8]]
    /// Trust only the pins: no chain to a CA and no name check, but the leaf must still be
    /// within its validity dates.
    public var pinOnly: Bool
    /// PEM CRL files: the leaf is checked against them (and fails on an expired CRL).
    public var crlFiles: [String]
    /// OCSP stapling.
    public var ocsp: OCSPMode
    /// TLS 1.2 cipher list, TLS 1.3 suites, groups, signature algorithms (OpenSSL syntax).
    public var ciphers: String?
    public var ciphersuites: String?
    public var groups: String?
    public var signatureAlgorithms: String?
    /// PEM certificate (chain) and key presented when the server asks for one.
    public var clientCertificate: String?
    public var clientKey: String?

    /// The policy's `ocsp` modes: off, if-stapled (check a staple when there is one:
    /// revoked, bad or stale refuses), require-stapled (refuse a server that sends none).
    public typealias OCSPMode = TLSRule.OCSPMode

    public init(
        trustSystem: Bool = true,
        caFiles: [String] = [],
        minVersion: TLSProtocolVersion = .floor,
        maxVersion: TLSProtocolVersion? = nil,
        alpn: [String] = [],
        alpnRequired: Bool = false,
        sessionCacheSize: Int = 4096,
        verifyDepth: Int = 10,
        acceptedNames: [String] = [],
        pins: [[UInt8]] = [],
        pinOnly: Bool = false,
        crlFiles: [String] = [],
        ocsp: OCSPMode = .off,
        ciphers: String? = nil,
        ciphersuites: String? = nil,
        groups: String? = nil,
        signatureAlgorithms: String? = nil,
        clientCertificate: String? = nil,
        clientKey: String? = nil
    ) {
        self.trustSystem = trustSystem
        self.caFiles = caFiles
        self.minVersion = minVersion
        self.maxVersion = maxVersion
        self.alpn = alpn
        self.alpnRequired = alpnRequired
        self.sessionCacheSize = sessionCacheSize
        self.verifyDepth = verifyDepth
        self.acceptedNames = acceptedNames
        self.pins = pins
        self.pinOnly = pinOnly
        self.crlFiles = crlFiles
        self.ocsp = ocsp
        self.ciphers = ciphers
        self.ciphersuites = ciphersuites
        self.groups = groups
        self.signatureAlgorithms = signatureAlgorithms
        self.clientCertificate = clientCertificate
        self.clientKey = clientKey
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
    /// The certificates the server presented, leaf first: only when the handler was made
    /// with `reportsPeerChain` (`tlsgate probe`); empty otherwise and on a resumed session.
    public let peerChain: [TLSCertificateSummary]

    public init(version: String, cipher: String, resumed: Bool, alpn: String?, peerChain: [TLSCertificateSummary] = []) {
        self.version = version
        self.cipher = cipher
        self.resumed = resumed
        self.alpn = alpn
        self.peerChain = peerChain
    }
}
