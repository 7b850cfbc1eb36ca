extension GatewayConfig {
    /// One line describing the config, as `tlsgate check --config` prints it before the
    /// policy lines:
    /// `config tlsgate.toml: mode redirect, from 198.18.0.0/24,2001:2::/64, listen ::, user tlsgate, workers as tlsgate-worker`.
    ///
    /// Local mode leaves out `from` and `interfaces` (ignored); tproxy mode adds the mark
    /// and the routing table; without `user` it says `user unchanged`. Then the workers'
    /// account: `workers as tlsgate-worker`, `workers as tlsgate-w-POLICY` (per-policy) or
    /// `workers as the gateway's account` (same).
    public var summaryLine: String {
        var parts = ["mode \(intercept.mode.rawValue)"]
        switch intercept.mode {
        case .local:
            parts[0] += " (this host's own connections)"
        case .redirect, .tproxy:
            if !intercept.from.isEmpty {
                parts.append("from " + intercept.from.map(\.description).joined(separator: ","))
            }
            if !intercept.interfaces.isEmpty {
                parts.append("interfaces " + intercept.interfaces.joined(separator: ","))
            }
        }
        if intercept.mode == .tproxy {
            parts.append("mark 0x\(String(intercept.tproxyMark, radix: 16)) table \(intercept.tproxyTable)")
        }
        parts.append("listen \(intercept.listen)")
        parts.append("user \(user ?? "unchanged")")
        parts.append("workers as \(workerUser == .perPolicy ? "\(WorkerUser.perPolicyPrefix)POLICY" : workerUser == .same ? "the gateway's account" : "\(workerUser)")")
        return "config \(sourcePath): " + parts.joined(separator: ", ")
    }
}
