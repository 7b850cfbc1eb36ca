extension Policy {
    /// One line describing the policy, as `tlsgate check` prints it:
    /// `http-example  match 203.0.113.0/24 port 80 -> upstream port 443, name api.example.com, trust system, TLS >= 1.2`.
    ///
    /// Settings that change what is verified or what the client sees are appended when they
    /// differ from the defaults, in this order: `pins N`, `crl N`, `ocsp MODE`,
    /// `accepted names N`, `verify depth N`, `mTLS`, `alpn A,B` (`(required)`),
    /// `on failure ACTION`, `deny direct`. With `pin_only`, `pin-only` replaces `trust ...`;
    /// with `server_name = "http-host"` the name is `from HTTP Host (allowed: ...)`; a legacy
    /// version range ends in `(legacy)`.
    ///
    /// The name is padded to `nameWidth` so that lines of several policies align.
    public func summaryLine(nameWidth: Int = 0) -> String {
        let padding = String(repeating: " ", count: max(0, nameWidth - name.count))
        let destinations = (match.networks.map(\.description) + match.hosts).joined(separator: ",")
        let name: String
        switch upstream.serverName {
        case .fixed(let fixed): name = fixed
        case .httpHost:
            let shown = upstream.allowedNames.prefix(3).joined(separator: ",")
            let more = upstream.allowedNames.count > 3 ? " +\(upstream.allowedNames.count - 3) more" : ""
            name = upstream.allowedNames.isEmpty ? "from HTTP Host" : "from HTTP Host (allowed: \(shown)\(more))"
        }
        let trust = tls.pinOnly
            ? "pin-only" : "trust " + ((tls.trustSystem ? ["system"] : []) + tls.caFiles).joined(separator: " + ")
        var versions = tls.maxVersion.map { max in
            max == tls.minVersion ? "TLS \(max.rawValue)" : "TLS \(tls.minVersion.rawValue)-\(max.rawValue)"
        } ?? "TLS >= \(tls.minVersion.rawValue)"
        if tls.isLegacy { versions += " (legacy)" }
        var line = "\(self.name)\(padding)  match \(destinations) port \(match.port) -> upstream port \(upstream.port)"
        if let starttls = upstream.starttls {
            line += starttls.requiredALPN.map { " via \(starttls.displayName) (ALPN \($0) required)" } ?? " via \(starttls.displayName) STARTTLS"
        }
        line += ", name \(name), \(trust), \(versions)"
        if !tls.pins.isEmpty { line += ", pins \(tls.pins.count)" }
        if !tls.crlFiles.isEmpty { line += ", crl \(tls.crlFiles.count)" }
        if tls.ocsp != .off { line += ", ocsp \(tls.ocsp.rawValue)" }
        if !tls.acceptedNames.isEmpty { line += ", accepted names \(tls.acceptedNames.count)" }
        if tls.verifyDepth != TLSRule.defaultVerifyDepth { line += ", verify depth \(tls.verifyDepth)" }
        if tls.clientCertificate != nil { line += ", mTLS" }
        if !tls.alpn.isEmpty {
            line += ", alpn \(tls.alpn.joined(separator: ","))" + (tls.alpnRequired ? " (required)" : "")
        }
        if upstream.onFailure != .close { line += ", on failure \(upstream.onFailure.rawValue)" }
        if firewall.denyDirect { line += ", deny direct" }
        return line
    }
}
