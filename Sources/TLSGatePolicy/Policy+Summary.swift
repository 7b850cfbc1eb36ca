extension Policy {
    /// One line describing the policy, as `tlsgate check` prints it:
    /// `http-example  match 203.0.113.0/24 port 80 -> upstream port 443, name api.example.com, trust system, TLS >= 1.2`.
    ///
    /// The name is padded to `nameWidth` so that lines of several policies align.
    public func summaryLine(nameWidth: Int = 0) -> String {
        let padding = String(repeating: " ", count: max(0, nameWidth - name.count))
        let destinations = (match.networks.map(\.description) + match.hosts).joined(separator: ",")
        let name: String
        switch upstream.serverName {
        case .fixed(let fixed): name = fixed
        case .httpHost: name = "from HTTP Host"
        }
        let trust = ((tls.trustSystem ? ["system"] : []) + tls.caFiles).joined(separator: " + ")
        let versions = tls.maxVersion.map { max in
            max == tls.minVersion ? "TLS \(max.rawValue)" : "TLS \(tls.minVersion.rawValue)-\(max.rawValue)"
        } ?? "TLS >= \(tls.minVersion.rawValue)"
        var line = "\(self.name)\(padding)  match \(destinations) port \(match.port) -> upstream port \(upstream.port)"
        line += ", name \(name), trust \(trust), \(versions)"
        if firewall.denyDirect { line += ", deny direct" }
        return line
    }
}
