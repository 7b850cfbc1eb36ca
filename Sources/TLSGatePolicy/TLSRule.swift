import FoundationEssentials

/// `[tls]`: how the server's certificate is verified. Verification cannot be turned off.
public struct TLSRule: Sendable, Hashable, Codable {
    /// `trust` includes `"system"`: trust the system's CA store. Default when `trust` is absent.
    public let trustSystem: Bool
    /// `trust` paths: CA bundles (PEM), as absolute paths (relative ones in the file are
    /// resolved against the policy file's directory).
    public let caFiles: [String]
    /// `min_version`: default `"1.2"`; `"1.0"`/`"1.1"` only for a legacy server (a warning, see `isLegacy`).
    public let minVersion: TLSProtocolVersion
    /// `max_version`: none by default (the library's highest); must be >= `minVersion`.
    public let maxVersion: TLSProtocolVersion?
    /// `verify_depth`: the longest chain accepted. Default 10, 1...32.
    public let verifyDepth: Int
    /// `accepted_names`: other names (DNS names, `*.` wildcards, IP literals) the certificate may carry.
    public let acceptedNames: [String]
    /// `pins`: `"sha256/BASE64"` SPKI digests; some certificate of the verified chain must match one.
    public let pins: [String]
    /// `pin_only`: trust the pins alone (private servers without a CA); requires `pins`.
    public let pinOnly: Bool
    /// `crl`: PEM CRL files (absolute paths); the leaf is checked against them.
    public let crlFiles: [String]
    /// `ocsp`: stapled OCSP checking.
    public let ocsp: OCSPMode
    /// `ciphers` (TLS 1.2), `ciphersuites` (TLS 1.3), `groups`, `signature_algorithms`: OpenSSL lists.
    public let ciphers: String?
    public let ciphersuites: String?
    public let groups: String?
    public let signatureAlgorithms: String?
    /// `alpn`: protocols offered; `alpn_required`: fail when the server selects none.
    public let alpn: [String]
    public let alpnRequired: Bool
    /// `client_certificate` / `client_key`: PEM files presented to servers that ask (absolute paths).
    public let clientCertificate: String?
    public let clientKey: String?

    public enum OCSPMode: String, Sendable, Hashable, Codable, CaseIterable {
        case off
        case ifStapled = "if-stapled"
        case requireStapled = "require-stapled"
    }

    public static let defaultVerifyDepth = 10
    public static let verifyDepthRange = 1...32

    /// The SHA-256 digests behind `pins` (the loader accepts only pins that decode to 32 bytes).
    public var pinDigests: [[UInt8]] { pins.compactMap(Self.pinDigest) }

    /// `"sha256/BASE64"` → the digest bytes; nil when it is not that form.
    static func pinDigest(_ pin: String) -> [UInt8]? {
        guard pin.hasPrefix("sha256/"), let data = Data(base64Encoded: String(pin.dropFirst(7))) else { return nil }
        return [UInt8](data)
    }

    /// Below TLS 1.2: the worker runs this policy at OpenSSL security level 0.
    public var isLegacy: Bool { minVersion < .tls1_2 }

    public init(
        trustSystem: Bool = true, caFiles: [String] = [],
        minVersion: TLSProtocolVersion = .floor, maxVersion: TLSProtocolVersion? = nil,
        verifyDepth: Int = defaultVerifyDepth, acceptedNames: [String] = [], pins: [String] = [],
        pinOnly: Bool = false, crlFiles: [String] = [], ocsp: OCSPMode = .off, ciphers: String? = nil,
        ciphersuites: String? = nil, groups: String? = nil, signatureAlgorithms: String? = nil,
        alpn: [String] = [], alpnRequired: Bool = false, clientCertificate: String? = nil, clientKey: String? = nil
    ) {
        self.trustSystem = trustSystem
        self.caFiles = caFiles
        self.minVersion = minVersion
        self.maxVersion = maxVersion
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
        self.alpn = alpn
        self.alpnRequired = alpnRequired
        self.clientCertificate = clientCertificate
        self.clientKey = clientKey
    }
}
