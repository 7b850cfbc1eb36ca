/// The tables and keys a policy file may contain, and the hints given for the rest.
enum PolicySchema {
    /// Known tables and their keys, in the order they are documented.
    static let tables: [(name: String, keys: [String])] = [
        ("match", ["networks", "hosts", "port"]),
        ("upstream", [
            "port", "server_name", "connect_timeout", "allowed_names", "on_failure", "host_header_timeout",
            "max_header_bytes", "starttls", "ehlo_name",
        ]),
        ("tls", [
            "trust", "min_version", "max_version", "verify_depth", "accepted_names", "pins", "pin_only", "crl", "ocsp",
            "ciphers", "ciphersuites", "groups", "signature_algorithms", "alpn", "alpn_required",
            "client_certificate", "client_key",
        ]),
        ("limits", ["max_connections", "idle_timeout"]),
        ("firewall", ["deny_direct"]),
    ]

    static let schema = TOMLSchema(
        tables: tables,
        rootKeyHint: "policy keys go in [match], [upstream], [tls], [limits] or [firewall]",
        plannedKeys: plannedKeys,
        foreignTables: Dictionary(
            uniqueKeysWithValues: GatewayConfigSchema.tables.map {
                ($0.name, "[\($0.name)] belongs in the global config file, not in a policy")
            }),
        overridingHint: { looksLikeVerificationSwitch($0) ? verificationHint : nil }
    )

    /// Keys from the design sketch that are not implemented yet.
    static let plannedKeys: [String: String] = [:]

    static let verificationHint = "verification cannot be turned off; give the server's CA in trust = ..."

    /// Keys that look like an attempt to switch verification off.
    static func looksLikeVerificationSwitch(_ key: String) -> Bool {
        let lower = key.lowercased()
        return ["verif", "insecure", "skip", "no_check", "check_host", "allow_invalid", "accept_any", "unsafe"]
            .contains { lower.contains($0) }
    }
}
