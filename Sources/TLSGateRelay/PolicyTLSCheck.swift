import TLSGatePolicy
import TLSGateTLS

/// The dry run of a policy's `[tls]` table: builds its `TLSContext` exactly as the worker
/// will (cipher lists, groups, signature algorithms, trust store, CRLs, client certificate
/// and key), without connecting. `tlsgate check`, `tlsgate run` and reload pass this to the
/// loaders, so what OpenSSL refuses is a `file:line` error before any worker starts.
public enum PolicyTLSCheck {
    public static let check: TLSSettingsCheck = { rule in
        do throws(TLSError) {
            _ = try TLSContext(configuration: TLSClientConfiguration(rule: rule))
            return []
        } catch {
            return [problem(error)]
        }
    }

    /// The policy key a context error is about, and the message `check` prints for it.
    static func problem(_ error: TLSError) -> TLSSettingsProblem {
        let key: String
        let hint: String
        switch error.setting {
        case .ciphers?:
            key = "ciphers"
            hint = "list the TLS 1.2 ciphers OpenSSL knows (openssl ciphers -v 'LIST' shows what a list selects)"
        case .ciphersuites?:
            key = "ciphersuites"
            hint = "use TLS 1.3 suite names such as TLS_AES_256_GCM_SHA384"
        case .groups?:
            key = "groups"
            hint = "use group names OpenSSL knows, such as X25519:P-256"
        case .signatureAlgorithms?:
            key = "signature_algorithms"
            hint = "use algorithms OpenSSL knows, such as ECDSA+SHA256:RSA-PSS+SHA256"
        case .trust?:
            key = "trust"
            hint = "give PEM CA certificates (openssl x509 -in FILE -noout checks one)"
        case .crl?:
            key = "crl"
            hint = "give PEM CRLs (openssl crl -in FILE -noout checks one)"
        case .clientCertificate?:
            key = "client_certificate"
            hint = "give the PEM certificate, then its chain (openssl x509 -in FILE -noout checks it)"
        case .clientKey?:
            key = "client_key"
            hint = "give the unencrypted PEM key of client_certificate (openssl pkey -in FILE -noout checks it)"
        case .minVersion?:
            key = "min_version"
            hint = "use \"1.2\" or \"1.3\""
        case .maxVersion?:
            key = "max_version"
            hint = "use \"1.2\" or \"1.3\", not below min_version"
        case .alpn?:
            key = "alpn"
            hint = "use protocol names such as \"h2\" and \"http/1.1\""
        case nil:
            key = ""
            hint = "check the [tls] table"
        }
        var what = error.context ?? "OpenSSL refuses the [tls] settings"
        if !error.reasons.isEmpty { what += " (\(error.reasons.joined(separator: "; ")))" }
        return TLSSettingsProblem(key: key, message: "\(key.isEmpty ? "[tls]" : key): \(what): \(hint)")
    }
}
