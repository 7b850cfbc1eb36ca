/// `[tls]`: how the server's certificate is verified. Verification cannot be turned off.
public struct TLSRule: Sendable, Hashable, Codable {
    /// `trust` includes `"system"`: trust the system's CA store. Default when `trust` is absent.
    public let trustSystem: Bool
    /// `trust` paths: CA bundles (PEM), as absolute paths (relative ones in the file are
    /// resolved against the policy file's directory).
    public let caFiles: [String]
    /// `min_version`: default and floor `"1.2"`.
    public let minVersion: TLSProtocolVersion
    /// `max_version`: none by default (the library's highest); must be >= `minVersion`.
    public let maxVersion: TLSProtocolVersion?

    public init(
        trustSystem: Bool = true, caFiles: [String] = [],
        minVersion: TLSProtocolVersion = .floor, maxVersion: TLSProtocolVersion? = nil
    ) {
        self.trustSystem = trustSystem
        self.caFiles = caFiles
        self.minVersion = minVersion
        self.maxVersion = maxVersion
    }
}
