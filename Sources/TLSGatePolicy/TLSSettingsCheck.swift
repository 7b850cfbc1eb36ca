/// A check of a policy's `[tls]` settings by the TLS library itself: the loaders run it on
/// every policy that decoded without error, so a cipher list, group, signature algorithm,
/// CA file, CRL or client key that OpenSSL refuses is a `file:line` error of `tlsgate check`,
/// `tlsgate run` and reload alike, before any worker starts.
///
/// The policy layer does not know OpenSSL; the executable passes the check
/// (`PolicyTLSCheck.check` in TLSGateRelay) to `PolicyLoader` and `GatewayConfigLoader`.
public typealias TLSSettingsCheck = @Sendable (TLSRule) -> [TLSSettingsProblem]

/// One `[tls]` setting the TLS library refused.
public struct TLSSettingsProblem: Sendable, Hashable {
    /// The policy key as written in the file (`ciphers`, `crl`, `client_key`, …): the
    /// diagnostic points at its line.
    public let key: String
    /// What failed and what to do.
    public let message: String

    public init(key: String, message: String) {
        self.key = key
        self.message = message
    }
}
