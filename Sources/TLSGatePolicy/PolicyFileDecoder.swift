#if canImport(Glibc)
import Glibc
#endif

/// Turns one policy file's TOML table into a `Policy`, collecting every problem with its line.
///
/// Each check reports and goes on, so one run lists all mistakes in the file. Messages
/// name the key as written in the file and say what to do.
/// `package`: the fuzz target (Sources/tlsgate-fuzz) drives it too.
package struct PolicyFileDecoder {
    /// The lines of the entries that cross-file conflict checks point at.
    struct Lines: Sendable {
        var networks: [Int] = []
        var hosts: [Int] = []
    }

    private var fields: TOMLFields
    private(set) var lines = Lines()
    /// The account the files this policy names are read as (its worker's, `worker_user`),
    /// for the messages about a file that cannot be read; nil: this process.
    var readerAccount: String?

    /// The path as the caller gave it: used in diagnostics and to resolve CA paths.
    var file: String { fields.file }
    var root: TOMLTable { fields.root }
    package var diagnostics: [Diagnostic] { fields.diagnostics }

    package init(file: String, root: TOMLTable) {
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

    package mutating func decode() -> Policy? {
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

        if let match, let upstream, let starttls = upstream.starttls, !starttls.usualPorts.contains(match.port),
            let line = value("upstream", "starttls")?.line
        {
            let ports = starttls.usualPorts.map(String.init).joined(separator: ", ")
            warning(line, "starttls = \"\(starttls.rawValue)\" usually runs on port \(ports), but match port is \(match.port)")
        }
        if let tls, let alpn = upstream?.starttls?.requiredALPN, !tls.alpn.isEmpty, tls.alpn != [alpn],
            let line = value("tls", "alpn")?.line
        {
            error(line, "starttls = \"\(upstream?.starttls?.rawValue ?? "")\" offers and requires ALPN \"\(alpn)\" itself: remove [tls] alpn, or set it to [\"\(alpn)\"]")
        }
        if let match, let upstream, upstream.starttls == nil, match.port == upstream.port,
            let line = value("upstream", "port")?.line
        {
            warning(line, "upstream port \(upstream.port) is also the match port: clients dialing it probably speak TLS already")
        }
        if let match, let upstream, upstream.onFailure == .http502, !UpstreamRule.httpPorts.contains(match.port),
            let line = value("upstream", "on_failure")?.line
        {
            let ports = UpstreamRule.httpPorts.map(String.init).joined(separator: ", ")
            warning(
                line,
                "on_failure = \"http-502\" answers with an HTTP page, but match port \(match.port) is not an HTTP port (\(ports)): its clients cannot read it; use \"close\" or \"reset\"")
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
        var ok = true
        var allowedNames: [String] = []
        var allowedNamesEmpty = false
        if let value = value("upstream", "allowed_names") {
            if let items = strings(value, key: "allowed_names", example: "[\"api.example.com\", \"*.cdn.example.com\"]") {
                allowedNamesEmpty = items.isEmpty
                for (text, line) in items {
                    if let problem = Self.wildcardNameProblem(text) {
                        error(line, "allowed_names: \(quoted(text)) is not a DNS name or \"*.\" wildcard: \(problem)")
                        ok = false
                    } else if allowedNames.contains(Self.normalizedWildcardName(text)) {
                        warning(line, "allowed_names lists \(quoted(text)) twice")
                    } else {
                        allowedNames.append(Self.normalizedWildcardName(text))
                    }
                }
            } else {
                ok = false
            }
            if serverName != nil && serverName != .httpHost {
                error(value.line, "allowed_names only applies to server_name = \"http-host\"")
                ok = false
            }
        } else if serverName == .httpHost {
            error(
                value("upstream", "server_name")?.line ?? headerLine("upstream"),
                "server_name = \"http-host\" needs allowed_names: list the Host names clients may ask for, e.g. [\"api.example.com\"]")
            ok = false
        }
        if serverName == .httpHost && allowedNamesEmpty, let value = value("upstream", "allowed_names") {
            error(value.line, "allowed_names is empty: list the Host names clients may ask for")
            ok = false
        }
        let onFailure = fields.choice("upstream", "on_failure", default: UpstreamRule.FailureAction.close)
        let headerTimeout = duration(
            in: "upstream", "host_header_timeout", default: UpstreamRule.defaultHostHeaderTimeout,
            range: UpstreamRule.hostHeaderTimeoutRange)
        let range = UpstreamRule.maxHeaderBytesRange
        let maxHeaderBytes = fields.integer(
            "upstream", "max_header_bytes", default: Int64(UpstreamRule.defaultMaxHeaderBytes),
            range: Int64(range.lowerBound)...Int64(range.upperBound)
        ).map { Int($0) }
        for key in ["host_header_timeout", "max_header_bytes"] where serverName != nil && serverName != .httpHost {
            if let value = value("upstream", key) {
                warning(value.line, "\(key) only applies to server_name = \"http-host\"; it is ignored here")
            }
        }
        var starttls: StartTLSProtocol?
        if let value = value("upstream", "starttls") {
            let names = StartTLSProtocol.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", ")
            if let text = value.stringValue {
                if let chosen = StartTLSProtocol(rawValue: text.lowercased()) {
                    starttls = chosen
                } else {
                    error(value.line, "starttls \(quoted(text)) is not a protocol tlsgate can upgrade; use one of \(names), or remove the key for direct TLS")
                    ok = false
                }
            } else {
                error(value.line, "starttls must be a string (one of \(names)), got \(value.typeDescription)")
                ok = false
            }
            if let chosen = starttls, serverName == .httpHost {
                error(value.line, "starttls = \"\(chosen.rawValue)\" cannot be used with server_name = \"http-host\" (that is for HTTP): set the server's name")
                ok = false
            }
            if let chosen = starttls, onFailure == .http502, let failure = self.value("upstream", "on_failure") {
                error(failure.line, "on_failure = \"http-502\" answers in HTTP, but this policy speaks \(chosen.displayName): use \"close\" (the client gets the protocol's own refusal) or \"reset\"")
                ok = false
            }
        }
        var ehloName: String?
        if let value = value("upstream", "ehlo_name") {
            if let text = value.stringValue {
                if let problem = DNSName.problem(with: text) {
                    error(value.line, "ehlo_name \(quoted(text)) is not a host name: \(problem)")
                    ok = false
                } else if starttls != .smtp {
                    error(value.line, "ehlo_name is the name the gateway gives in SMTP's EHLO: it needs starttls = \"smtp\"; remove it")
                    ok = false
                } else {
                    ehloName = DNSName.normalized(text)
                }
            } else {
                error(value.line, "ehlo_name must be a string (a host name such as \"gateway.example.com\"), got \(value.typeDescription)")
                ok = false
            }
        }
        guard ok, let port, let serverName, let timeout, let onFailure, let headerTimeout, let maxHeaderBytes else {
            return nil
        }
        return UpstreamRule(
            port: port, serverName: serverName, connectTimeout: timeout, allowedNames: allowedNames,
            onFailure: onFailure, hostHeaderTimeout: headerTimeout, maxHeaderBytes: maxHeaderBytes, starttls: starttls,
            ehloName: ehloName)
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

        let depthRange = TLSRule.verifyDepthRange
        let verifyDepth = fields.integer(
            "tls", "verify_depth", default: Int64(TLSRule.defaultVerifyDepth),
            range: Int64(depthRange.lowerBound)...Int64(depthRange.upperBound)
        ).map { Int($0) }
        if verifyDepth == nil { ok = false }

        var acceptedNames: [String] = []
        if let value = value("tls", "accepted_names") {
            if let items = strings(value, key: "accepted_names", example: "[\"api.example.com\"]") {
                for (text, line) in items {
                    if let address = IPAddress(text) {
                        acceptedNames.append(address.description)
                        continue
                    }
                    if let problem = Self.wildcardNameProblem(text) {
                        error(line, "accepted_names: \(quoted(text)) is not a DNS name, \"*.\" wildcard or IP address: \(problem)")
                        ok = false
                    } else {
                        acceptedNames.append(Self.normalizedWildcardName(text))
                    }
                }
            } else {
                ok = false
            }
        }

        var pins: [String] = []
        if let value = value("tls", "pins") {
            if let items = strings(value, key: "pins", example: "[\"sha256/BASE64\"]") {
                for (text, line) in items {
                    guard let digest = TLSRule.pinDigest(text), digest.count == 32
                    else {
                        error(line, "pins: \(quoted(text)) is not \"sha256/\" and the base64 of a 32-byte SPKI SHA-256 digest (openssl x509 -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64)")
                        ok = false
                        continue
                    }
                    if pins.contains(text) {
                        warning(line, "pins lists \(quoted(text)) twice")
                    } else {
                        pins.append(text)
                    }
                }
            } else {
                ok = false
            }
        }
        var pinOnly = false
        if let value = value("tls", "pin_only") {
            if let flag = value.booleanValue {
                pinOnly = flag
                if flag && pins.isEmpty {
                    error(value.line, "pin_only = true needs pins: list the SPKI pins that identify the server")
                    ok = false
                }
                if flag, let trust = self.value("tls", "trust") {
                    warning(trust.line, "trust is ignored with pin_only")
                }
            } else {
                error(value.line, "pin_only must be true or false, got \(value.typeDescription)")
                ok = false
            }
        }

        var crlFiles: [String] = []
        if let value = value("tls", "crl") {
            let items: [(text: String, line: Int)]?
            if let single = value.stringValue {
                items = [(single, value.line)]
            } else if value.arrayValue != nil {
                items = strings(value, key: "crl", example: "[\"/etc/tlsgate/crl.pem\"]")
            } else {
                error(value.line, "crl must be a CRL file path (PEM) or an array of them, got \(value.typeDescription)")
                items = nil
            }
            if let items {
                for (text, line) in items {
                    if let path = pemFile(text, key: "crl", marker: "-----BEGIN X509 CRL-----", line: line) {
                        crlFiles.append(path)
                    } else {
                        ok = false
                    }
                }
            } else {
                ok = false
            }
        }
        let ocsp = fields.choice("tls", "ocsp", default: TLSRule.OCSPMode.off)
        if ocsp == nil { ok = false }

        func list(_ key: String, allowed: (Character) -> Bool, example: String) -> String? {
            guard let text = fields.string("tls", key) else {
                if self.value("tls", key) != nil { ok = false }
                return nil
            }
            guard !text.isEmpty, text.allSatisfy(allowed) else {
                error(self.value("tls", key)?.line, "\(key) \(quoted(text)) is not an OpenSSL list such as \(quoted(example))")
                ok = false
                return nil
            }
            return text
        }
        var ciphers = list("ciphers", allowed: { $0.unicodeScalars.allSatisfy { (0x21...0x7e).contains($0.value) } }, example: "ECDHE+AESGCM:ECDHE+CHACHA20")
        if let text = ciphers, text.lowercased().contains("@seclevel") {
            // The level decides which keys, signatures and suites OpenSSL accepts at all
            // (0 allows anonymous suites): tlsgate sets it, no policy does.
            error(
                value("tls", "ciphers")?.line,
                "ciphers \(quoted(text)) sets @SECLEVEL: the security level is not a policy setting (tlsgate keeps the system's, and 0 only for min_version \"1.0\"/\"1.1\"); remove it")
            ciphers = nil
            ok = false
        }
        let suites = list("ciphersuites", allowed: { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == ":") }, example: "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256")
        if let suites {
            let known = ["TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256", "TLS_AES_128_CCM_SHA256", "TLS_AES_128_CCM_8_SHA256"]
            var unknown: [String] = []
            for name in suites.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
            where !known.contains(name) && !unknown.contains(name) {
                unknown.append(name)
                error(value("tls", "ciphersuites")?.line, "ciphersuites: \(quoted(String(name))) is not a TLS 1.3 suite (\(known.joined(separator: ", ")))")
                ok = false
            }
        }
        let groups = list("groups", allowed: { $0.isASCII && ($0.isLetter || $0.isNumber || "-_:".contains($0)) }, example: "X25519:P-256")
        let sigalgs = list("signature_algorithms", allowed: { $0.isASCII && ($0.isLetter || $0.isNumber || "-_:+".contains($0)) }, example: "ECDSA+SHA256:RSA-PSS+SHA256")

        var alpn: [String] = []
        if let value = value("tls", "alpn") {
            if let items = strings(value, key: "alpn", example: "[\"h2\", \"http/1.1\"]") {
                for (text, line) in items {
                    guard (1...255).contains(text.utf8.count), text.utf8.allSatisfy({ (0x20...0x7e).contains($0) }) else {
                        error(line, "alpn: \(quoted(text)) is not a protocol name (1 to 255 printable ASCII characters)")
                        ok = false
                        continue
                    }
                    alpn.append(text)
                }
            } else {
                ok = false
            }
        }
        var alpnRequired = false
        if let value = value("tls", "alpn_required") {
            if let flag = value.booleanValue {
                alpnRequired = flag
                if flag && alpn.isEmpty {
                    error(value.line, "alpn_required = true needs alpn: list the protocols to offer")
                    ok = false
                }
            } else {
                error(value.line, "alpn_required must be true or false, got \(value.typeDescription)")
                ok = false
            }
        }

        var clientCertificate: String?
        var clientKey: String?
        let certValue = value("tls", "client_certificate")
        let keyValue = value("tls", "client_key")
        if let certValue, keyValue == nil {
            error(certValue.line, "client_certificate needs client_key: the certificate's private key (PEM, chmod 600)")
            ok = false
        } else if let keyValue, certValue == nil {
            error(keyValue.line, "client_key needs client_certificate: the certificate (PEM) that goes with it")
            ok = false
        }
        if let certValue {
            if let text = fields.string("tls", "client_certificate", what: "a PEM file path") {
                clientCertificate = pemFile(text, key: "client_certificate", marker: "-----BEGIN CERTIFICATE-----", line: certValue.line)
            }
            if clientCertificate == nil { ok = false }
        }
        if let keyValue {
            if let text = fields.string("tls", "client_key", what: "a PEM file path") {
                clientKey = privateKeyFile(text, line: keyValue.line)
            }
            if clientKey == nil { ok = false }
        }

        guard ok, let minVersion, let verifyDepth, let ocsp else { return nil }
        return TLSRule(
            trustSystem: pinOnly ? false : trustSystem, caFiles: pinOnly ? [] : caFiles, minVersion: minVersion,
            maxVersion: maxVersion, verifyDepth: verifyDepth, acceptedNames: acceptedNames, pins: pins,
            pinOnly: pinOnly, crlFiles: crlFiles, ocsp: ocsp, ciphers: ciphers, ciphersuites: suites, groups: groups,
            signatureAlgorithms: sigalgs, alpn: alpn, alpnRequired: alpnRequired,
            clientCertificate: clientCertificate, clientKey: clientKey)
    }

    /// Checks a PEM file named by `key` (relative to the policy file) holds `marker`;
    /// returns its absolute path.
    private mutating func pemFile(_ text: String, key: String, marker: String, line: Int) -> String? {
        let shown = PathText.join(PathText.directory(of: file), text)
        let bytes: [UInt8]
        do {
            bytes = try TextFile.readBytes(shown, limit: 64 << 20)
        } catch {
            self.error(line, "\(key): cannot read \(quoted(shown))\(asReader): \(error.reason)")
            return nil
        }
        guard Self.contains(bytes, Array(marker.utf8)) else {
            error(line, "\(key): \(quoted(shown)) contains no \(quoted(marker)) line")
            return nil
        }
        return PathText.absolute(shown)
    }

    /// The client key: readable, a PEM private key, and neither group- nor world-readable.
    private mutating func privateKeyFile(_ text: String, line: Int) -> String? {
        let shown = PathText.join(PathText.directory(of: file), text)
        var info = stat()
        if stat(shown, &info) == 0, info.st_mode & 0o077 != 0 {
            let digits = String(info.st_mode & 0o777, radix: 8)
            let mode = String(repeating: "0", count: max(0, 4 - digits.count)) + digits
            error(line, "client_key \(quoted(shown)) is readable by group or others (mode \(mode)): chmod 600 \(shown)")
            return nil
        }
        guard let path = pemFile(text, key: "client_key", marker: "PRIVATE KEY-----", line: line) else { return nil }
        let bytes = (try? TextFile.readBytes(path, limit: 64 << 20)) ?? []
        if ["-----BEGIN ENCRYPTED PRIVATE KEY-----", "Proc-Type: 4,ENCRYPTED"].contains(where: { Self.contains(bytes, Array($0.utf8)) }) {
            error(line, "client_key \(quoted(shown)) is encrypted: tlsgate cannot ask for a passphrase; store it decrypted (openssl pkey -in \(shown) -out KEY.pem) and chmod 600")
            return nil
        }
        return path
    }

    /// Nil if `text` is a DNS name or a `*.` wildcard over one (one leading `*` label only),
    /// else why not.
    static func wildcardNameProblem(_ text: String) -> String? {
        let bare = text.hasPrefix("*.") ? String(text.dropFirst(2)) : text
        if bare.contains("*") { return "only one leading \"*.\" label may be a wildcard" }
        return DNSName.problem(with: bare)
    }

    /// Lowercased, without a trailing dot, `*.` kept.
    static func normalizedWildcardName(_ text: String) -> String {
        text.hasPrefix("*.") ? "*." + DNSName.normalized(String(text.dropFirst(2))) : DNSName.normalized(text)
    }

    static func contains(_ bytes: [UInt8], _ marker: [UInt8]) -> Bool {
        guard bytes.count >= marker.count else { return false }
        return (0...(bytes.count - marker.count)).contains { start in
            bytes[start] == marker[0] && Array(bytes[start..<(start + marker.count)]) == marker
        }
    }

    /// ` as the account "x" the workers run as`, or nothing when read as this process.
    private var asReader: String {
        readerAccount.map { " as the account \(quoted($0)) the workers run as" } ?? ""
    }

    /// Checks a CA bundle named in `trust` and returns its absolute path.
    private mutating func caFile(_ text: String, line: Int) -> String? {
        let shown = PathText.join(PathText.directory(of: file), text)
        let bytes: [UInt8]
        do {
            bytes = try TextFile.readBytes(shown, limit: 16 << 20)
        } catch {
            self.error(line, "trust: cannot read CA file \(quoted(shown))\(asReader): \(error.reason)")
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
            error(value.line, "\(key) \(quoted(text)) is not a TLS version: use \"1.2\" or \"1.3\" (\"1.0\" and \"1.1\" for legacy servers)")
            return nil
        }
        if version < .floor {
            warning(
                value.line,
                "\(key) \(quoted(text)) is below \(TLSProtocolVersion.floor.rawValue): this policy runs OpenSSL at security level 0 for a legacy server")
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

    /// The line of `key` in `[table]`, or the table's header when the file does not set it.
    func line(of key: String, in table: String) -> Int {
        value(table, key)?.line ?? headerLine(table)
    }

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
