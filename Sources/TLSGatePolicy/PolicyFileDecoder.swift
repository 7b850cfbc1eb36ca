/// Turns one policy file's TOML table into a `Policy`, collecting every problem with its line.
///
/// Each check reports and goes on, so one run lists all mistakes in the file. Messages
/// name the key as written in the file and say what to do.
struct PolicyFileDecoder {
    /// The lines of the entries that cross-file conflict checks point at.
    struct Lines: Sendable {
        var networks: [Int] = []
        var hosts: [Int] = []
    }

    private var fields: TOMLFields
    private(set) var lines = Lines()

    /// The path as the caller gave it: used in diagnostics and to resolve CA paths.
    var file: String { fields.file }
    var root: TOMLTable { fields.root }
    var diagnostics: [Diagnostic] { fields.diagnostics }

    init(file: String, root: TOMLTable) {
        fields = TOMLFields(file: file, root: root)
    }

    /// `[A-Za-z0-9._-]+`: what a policy name (the file stem) may contain.
    static func isValidName(_ name: String) -> Bool {
        !name.isEmpty && name.unicodeScalars.allSatisfy { char in
            switch char {
            case "A"..."Z", "a"..."z", "0"..."9", ".", "_", "-": return true
            default: return false
            }
        }
    }

    mutating func decode() -> Policy? {
        checkStructure()
        let name = PathText.stem(of: file)
        if !Self.isValidName(name) {
            error(nil, "policy name \(quoted(name)) (from the file name) may only contain letters, digits, \".\", \"_\" and \"-\"")
        }
        let match = decodeMatch()
        let upstream = decodeUpstream()
        let tls = decodeTLS()
        let limits = decodeLimits()
        let firewall = decodeFirewall()

        if let match, let upstream, match.port == upstream.port, let line = value("upstream", "port")?.line {
            warning(line, "upstream port \(upstream.port) is also the match port: clients dialing it probably speak TLS already")
        }
        guard !diagnostics.contains(where: \.isError), let match, let upstream, let tls, let limits, let firewall
        else { return nil }
        return Policy(
            name: name, sourcePath: file, match: match, upstream: upstream, tls: tls, limits: limits,
            firewall: firewall)
    }

    // MARK: - Unknown tables and keys

    private mutating func checkStructure() {
        fields.checkStructure(PolicySchema.schema)
    }

    // MARK: - [match]

    private mutating func decodeMatch() -> MatchRule? {
        var ok = true
        var networks: [IPNetwork] = []
        var hosts: [String] = []
        var destinationsGiven = false

        if let value = value("match", "networks") {
            if let elements = strings(value, key: "networks", example: "[\"203.0.113.0/24\"]") {
                destinationsGiven = destinationsGiven || !elements.isEmpty
                for (text, line) in elements {
                    do {
                        let network = try IPNetwork.parse(text)
                        if let index = networks.firstIndex(where: { $0.overlaps(network) }) {
                            warning(line, "networks: \(network) overlaps \(networks[index]) listed on line \(lines.networks[index])")
                        }
                        networks.append(network)
                        lines.networks.append(line)
                    } catch {
                        self.error(line, "networks: \(error.description)")
                        ok = false
                    }
                }
            } else {
                ok = false
                destinationsGiven = true
            }
        }

        if let value = value("match", "hosts") {
            if let elements = strings(value, key: "hosts", example: "[\"api.example.com\"]") {
                destinationsGiven = destinationsGiven || !elements.isEmpty
                for (text, line) in elements {
                    if IPAddress(text) != nil || IPNetwork(text) != nil {
                        error(line, "hosts: \(quoted(text)) is an IP address; put it in networks")
                        ok = false
                    } else if let problem = DNSName.problem(with: text) {
                        error(line, "hosts: \(quoted(text)) is not a DNS name: \(problem)")
                        ok = false
                    } else {
                        let host = DNSName.normalized(text)
                        if let index = hosts.firstIndex(of: host) {
                            warning(line, "hosts: \(quoted(host)) is already listed on line \(lines.hosts[index])")
                            continue
                        }
                        hosts.append(host)
                        lines.hosts.append(line)
                    }
                }
            } else {
                ok = false
                destinationsGiven = true
            }
        }

        if !destinationsGiven {
            let line = value("match", "networks")?.line ?? value("match", "hosts")?.line ?? headerLine("match")
            error(line, "missing [match] networks or hosts: list the destinations this policy takes over")
            ok = false
        }

        let port = port(in: "match", missing: "missing [match] port: set the plain-text port clients dial, e.g. 80")
        guard ok, let port else { return nil }
        return MatchRule(networks: networks, hosts: hosts, port: port)
    }

    // MARK: - [upstream]

    private mutating func decodeUpstream() -> UpstreamRule? {
        let port = port(in: "upstream", missing: "missing [upstream] port: set the server's TLS port, e.g. 443")

        var serverName: ServerName?
        if let value = value("upstream", "server_name") {
            if let text = value.stringValue {
                if text == ServerName.httpHostKeyword {
                    serverName = .httpHost
                } else if let address = IPAddress(text) {
                    serverName = .fixed(address.description)
                } else if let problem = DNSName.problem(with: text) {
                    error(value.line, "server_name \(quoted(text)) is not a DNS name, an IP address or \"http-host\": \(problem)")
                } else {
                    serverName = .fixed(DNSName.normalized(text))
                }
            } else {
                error(value.line, "server_name must be a string, got \(value.typeDescription)")
            }
        } else {
            error(
                headerLine("upstream"),
                "missing [upstream] server_name: set the name to verify the server's certificate against, or \"http-host\"")
        }

        let timeout = duration(
            in: "upstream", "connect_timeout", default: UpstreamRule.defaultConnectTimeout,
            range: UpstreamRule.connectTimeoutRange)
        guard let port, let serverName, let timeout else { return nil }
        return UpstreamRule(port: port, serverName: serverName, connectTimeout: timeout)
    }

    // MARK: - [tls]

    private mutating func decodeTLS() -> TLSRule? {
        var ok = true
        var trustSystem = true
        var caFiles: [String] = []
        if let value = value("tls", "trust") {
            trustSystem = false
            var items: [TOMLValue] = []
            switch value.kind {
            case .string: items = [value]
            case .array(let elements): items = elements
            default:
                error(value.line, "trust must be \"system\", a CA bundle path, or an array of them, got \(value.typeDescription)")
                ok = false
            }
            if ok && items.isEmpty {
                error(value.line, "trust is empty: give \"system\" and/or a CA bundle path")
                ok = false
            }
            var seenSystem = false
            for item in items {
                guard let text = item.stringValue else {
                    error(item.line, "trust must contain only strings, got \(item.typeDescription)")
                    ok = false
                    continue
                }
                if text == "system" {
                    if seenSystem { warning(item.line, "trust lists \"system\" twice") }
                    seenSystem = true
                    trustSystem = true
                    continue
                }
                if text.isEmpty {
                    error(item.line, "trust: empty CA bundle path")
                    ok = false
                    continue
                }
                guard let path = caFile(text, line: item.line) else {
                    ok = false
                    continue
                }
                if caFiles.contains(path) {
                    warning(item.line, "trust lists \(quoted(text)) twice")
                } else {
                    caFiles.append(path)
                }
            }
        }

        let minVersion = version("min_version") ?? (value("tls", "min_version") == nil ? TLSProtocolVersion.floor : nil)
        let maxVersion = version("max_version")
        if let minVersion, let maxVersion, maxVersion < minVersion, let line = value("tls", "max_version")?.line {
            error(line, "max_version \(quoted(maxVersion.rawValue)) is below min_version \(quoted(minVersion.rawValue))")
            ok = false
        }
        if value("tls", "max_version") != nil && maxVersion == nil { ok = false }
        guard ok, let minVersion else { return nil }
        return TLSRule(trustSystem: trustSystem, caFiles: caFiles, minVersion: minVersion, maxVersion: maxVersion)
    }

    /// Checks a CA bundle named in `trust` and returns its absolute path.
    private mutating func caFile(_ text: String, line: Int) -> String? {
        let shown = PathText.join(PathText.directory(of: file), text)
        let bytes: [UInt8]
        do {
            bytes = try TextFile.readBytes(shown, limit: 16 << 20)
        } catch {
            self.error(line, "trust: cannot read CA file \(quoted(shown)): \(error.reason)")
            return nil
        }
        let marker = Array("-----BEGIN CERTIFICATE-----".utf8)
        let found = bytes.count >= marker.count && (0...(bytes.count - marker.count)).contains { start in
            bytes[start] == marker[0] && Array(bytes[start..<(start + marker.count)]) == marker
        }
        guard found else {
            error(line, "trust: CA file \(quoted(shown)) contains no certificate (no \"-----BEGIN CERTIFICATE-----\" line)")
            return nil
        }
        return PathText.absolute(shown)
    }

    private mutating func version(_ key: String) -> TLSProtocolVersion? {
        guard let value = value("tls", key) else { return nil }
        guard let text = value.stringValue else {
            error(value.line, "\(key) must be a string such as \"1.2\", got \(value.typeDescription)")
            return nil
        }
        guard let version = TLSProtocolVersion(rawValue: text) else {
            error(value.line, "\(key) \(quoted(text)) is not a TLS version: use \"1.2\" or \"1.3\"")
            return nil
        }
        guard version >= .floor else {
            error(value.line, "\(key) \(quoted(text)) is below the floor \(quoted(TLSProtocolVersion.floor.rawValue))")
            return nil
        }
        return version
    }

    // MARK: - [limits] and [firewall]

    private mutating func decodeLimits() -> Limits? {
        let range = Limits.maxConnectionsRange
        let maxConnections = fields.integer(
            "limits", "max_connections", default: Int64(Limits.defaultMaxConnections),
            range: Int64(range.lowerBound)...Int64(range.upperBound)
        ).map { Int($0) }
        let idle = duration(
            in: "limits", "idle_timeout", default: Limits.defaultIdleTimeout, range: Limits.idleTimeoutRange)
        guard let maxConnections, let idle else { return nil }
        return Limits(maxConnections: maxConnections, idleTimeout: idle)
    }

    private mutating func decodeFirewall() -> FirewallRule? {
        guard let value = value("firewall", "deny_direct") else { return FirewallRule() }
        guard let flag = value.booleanValue else {
            error(value.line, "deny_direct must be true or false, got \(value.typeDescription)")
            return nil
        }
        return FirewallRule(denyDirect: flag)
    }

    // MARK: - Typed lookups

    /// The value of `key` in `[table]`, if the file sets it.
    private func value(_ table: String, _ key: String) -> TOMLValue? {
        fields.value(table, key)
    }

    /// The line to blame for a missing key: the table's header, or line 1 if the table is missing.
    private func headerLine(_ table: String) -> Int {
        fields.headerLine(table)
    }

    private mutating func port(in table: String, missing: String) -> UInt16? {
        guard value(table, "port") != nil else {
            error(headerLine(table), missing)
            return nil
        }
        return fields.integer(table, "port", default: nil, range: 1...65535).map { UInt16($0) }
    }

    private mutating func duration(
        in table: String, _ key: String, default defaultValue: TimeSpan, range: ClosedRange<TimeSpan>
    ) -> TimeSpan? {
        fields.duration(table, key, default: defaultValue, range: range)
    }

    /// The elements of an array of strings with their lines; nil (after reporting) otherwise.
    private mutating func strings(_ value: TOMLValue, key: String, example: String) -> [(text: String, line: Int)]? {
        fields.strings(value, key: key, example: example)
    }

    private mutating func error(_ line: Int?, _ message: String) {
        fields.error(line, message)
    }

    private mutating func warning(_ line: Int?, _ message: String) {
        fields.warning(line, message)
    }
}
