import Foundation
import Testing

@testable import TLSGatePolicy

/// The `[upstream]` and `[tls]` keys of the verification work: every key accepted with the
/// value it gives, every message exact (`p.toml:LINE: ...`, the scratch folder removed).
///
/// `basePolicy` ends in `[upstream]` on line 7, so an appended key is on line 8, and after
/// `"\n[tls]"` the first key is on line 9.
@Suite struct PolicyVerificationKeysTests {
    static let cert = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    static let key = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n"
    static let crl = "-----BEGIN X509 CRL-----\nMIIB\n-----END X509 CRL-----\n"
    /// 32 bytes of zeros, and a real-looking digest.
    static let pinA = "sha256/" + String(repeating: "A", count: 43) + "="
    static let pinB = "sha256/CnUK6U3QVSbbKGMPmF4w0FCz5qLSMSoHL/BN1X7IZ8w="

    /// A folder with `p.toml` = `text` plus `files`, each chmodded to `modes[name]` (default 0600).
    struct Loaded {
        let directory: String
        let policy: Policy?
        /// Diagnostics with `directory + "/"` removed.
        let lines: [String]
    }

    static func load(_ text: String, files: [String: String] = [:], modes: [String: mode_t] = [:]) throws -> Loaded {
        let directory = try Fixtures.folder(files.merging(["p.toml": text]) { $1 })
        for name in files.keys {
            chmod(directory + "/" + name, modes[name] ?? 0o600)
        }
        let (policy, found) = PolicyLoader.loadFile(directory + "/p.toml")
        return Loaded(
            directory: directory, policy: policy,
            lines: found.map { $0.description.replacingOccurrences(of: directory + "/", with: "") })
    }

    private func tls(_ lines: String) -> String { basePolicy + "\n[tls]\n" + lines }

    private var httpHost: String {
        basePolicy.replacingOccurrences(
            of: "server_name = \"api.example.com\"",
            with: "server_name = \"http-host\"\nallowed_names = [\"api.example.com\"]")
    }

    // MARK: - Every key, valid

    @Test func everyTLSKeyValid() throws {
        let text = tls(
            """
            trust = ["system", "ca.pem"]
            min_version = "1.2"
            max_version = "1.3"
            verify_depth = 4
            accepted_names = ["api-eu.example.com", "*.API.example.net.", "192.0.2.10", "2001:DB8::1"]
            pins = ["\(Self.pinA)", "\(Self.pinB)"]
            crl = "crl.pem"
            ocsp = "require-stapled"
            ciphers = "ECDHE+AESGCM:!aNULL:@STRENGTH"
            ciphersuites = "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256:TLS_AES_128_CCM_SHA256:TLS_AES_128_CCM_8_SHA256"
            groups = "X25519:P-256:ffdhe2048"
            signature_algorithms = "ECDSA+SHA256:RSA-PSS+SHA256:rsa_pss_rsae_sha256"
            alpn = ["h2", "http/1.1"]
            alpn_required = true
            client_certificate = "client.pem"
            client_key = "client.key"
            """)
        let loaded = try Self.load(
            text, files: ["ca.pem": Self.cert, "crl.pem": Self.crl, "client.pem": Self.cert, "client.key": Self.key])
        defer { Fixtures.remove(loaded.directory) }
        #expect(loaded.lines == [])
        let dir = loaded.directory
        let expected = TLSRule(
            trustSystem: true, caFiles: [dir + "/ca.pem"], minVersion: .tls1_2, maxVersion: .tls1_3, verifyDepth: 4,
            acceptedNames: ["api-eu.example.com", "*.api.example.net", "192.0.2.10", "2001:db8::1"],
            pins: [Self.pinA, Self.pinB], pinOnly: false, crlFiles: [dir + "/crl.pem"], ocsp: .requireStapled,
            ciphers: "ECDHE+AESGCM:!aNULL:@STRENGTH",
            ciphersuites:
                "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256:TLS_AES_128_CCM_SHA256:TLS_AES_128_CCM_8_SHA256",
            groups: "X25519:P-256:ffdhe2048", signatureAlgorithms: "ECDSA+SHA256:RSA-PSS+SHA256:rsa_pss_rsae_sha256",
            alpn: ["h2", "http/1.1"], alpnRequired: true, clientCertificate: dir + "/client.pem",
            clientKey: dir + "/client.key")
        #expect(loaded.policy?.tls == expected)
        #expect(loaded.policy?.tls.pinDigests == [[UInt8](repeating: 0, count: 32), [UInt8](Data(base64Encoded: String(Self.pinB.dropFirst(7)))!)])
        #expect(loaded.policy?.tls.isLegacy == false)
    }

    @Test func everyUpstreamKeyValid() throws {
        let text = basePolicy.replacingOccurrences(
            of: "server_name = \"api.example.com\"",
            with: """
                server_name = "http-host"
                allowed_names = ["API.example.com", "*.cdn.Example.com."]
                on_failure = "http-502"
                host_header_timeout = "250ms"
                max_header_bytes = 512
                """)
        let loaded = try Self.load(text)
        defer { Fixtures.remove(loaded.directory) }
        #expect(loaded.lines == [])
        #expect(
            loaded.policy?.upstream
                == UpstreamRule(
                    port: 443, serverName: .httpHost, connectTimeout: .seconds(5),
                    allowedNames: ["api.example.com", "*.cdn.example.com"], onFailure: .http502,
                    hostHeaderTimeout: TimeSpan(milliseconds: 250), maxHeaderBytes: 512))

        for (word, action) in [("close", UpstreamRule.FailureAction.close), ("reset", .reset), ("http-502", .http502)] {
            let fixed = try Self.load(basePolicy + "\non_failure = \"\(word)\"")
            defer { Fixtures.remove(fixed.directory) }
            #expect(fixed.lines == [])
            #expect(fixed.policy?.upstream.onFailure == action)
        }
    }

    @Test func http502OnANonHTTPPortWarns() throws {
        let ldap = basePolicy.replacingOccurrences(of: "port = 80", with: "port = 389") + "\non_failure = \"http-502\""
        let loaded = try Self.load(ldap)
        defer { Fixtures.remove(loaded.directory) }
        #expect(loaded.lines == [
            "p.toml:8: warning: on_failure = \"http-502\" answers with an HTTP page, but match port 389 is not an HTTP port (80, 3128, 8000, 8008, 8080, 8888): its clients cannot read it; use \"close\" or \"reset\""
        ])
        #expect(loaded.policy?.upstream.onFailure == .http502)
        // The HTTP ports, and the other actions on any port, say nothing.
        for port in [80, 3128, 8000, 8008, 8080, 8888] {
            let http = try Self.load(
                basePolicy.replacingOccurrences(of: "port = 80", with: "port = \(port)") + "\non_failure = \"http-502\"")
            defer { Fixtures.remove(http.directory) }
            #expect(http.lines == [], "port \(port)")
        }
        for action in ["close", "reset"] {
            let other = try Self.load(
                basePolicy.replacingOccurrences(of: "port = 80", with: "port = 389") + "\non_failure = \"\(action)\"")
            defer { Fixtures.remove(other.directory) }
            #expect(other.lines == [], "\(action)")
        }
    }

    @Test func defaults() throws {
        let loaded = try Self.load(httpHost)
        defer { Fixtures.remove(loaded.directory) }
        let upstream = try #require(loaded.policy?.upstream)
        #expect(upstream.onFailure == .close)
        #expect(upstream.hostHeaderTimeout == .seconds(5))
        #expect(upstream.maxHeaderBytes == 8192)
        let tls = try #require(loaded.policy?.tls)
        #expect(tls == TLSRule())
        #expect(tls.verifyDepth == 10)
        #expect(tls.ocsp == .off)
        #expect(!tls.pinOnly && !tls.alpnRequired && tls.pins.isEmpty && tls.crlFiles.isEmpty)
        #expect(tls.ciphers == nil && tls.ciphersuites == nil && tls.groups == nil && tls.signatureAlgorithms == nil)
        #expect(tls.clientCertificate == nil && tls.clientKey == nil)
    }

    // MARK: - [upstream]

    @Test func httpHostRequiresAllowedNames() throws {
        #expect(try diagnostics(basePolicy.replacingOccurrences(of: "\"api.example.com\"", with: "\"http-host\"")) == [
            "p.toml:7: server_name = \"http-host\" needs allowed_names: list the Host names clients may ask for, e.g. [\"api.example.com\"]"
        ])
        #expect(try diagnostics(httpHost.replacingOccurrences(of: "[\"api.example.com\"]", with: "[]")) == [
            "p.toml:8: allowed_names is empty: list the Host names clients may ask for"
        ])
        #expect(try diagnostics(httpHost.replacingOccurrences(of: "[\"api.example.com\"]", with: "\"api.example.com\"")) == [
            "p.toml:8: allowed_names must be an array of strings such as [\"api.example.com\", \"*.cdn.example.com\"], got a string"
        ])
        #expect(try diagnostics(basePolicy + "\nallowed_names = [\"api.example.com\"]") == [
            "p.toml:8: allowed_names only applies to server_name = \"http-host\""
        ])
    }

    @Test func allowedNamesWildcards() throws {
        let names = "[\n  \"*.*.example.com\",\n  \"*\",\n  \"api.*.example.com\",\n  \"a_b.example\",\n  \"*.Example.COM.\",\n]"
        #expect(try diagnostics(httpHost.replacingOccurrences(of: "[\"api.example.com\"]", with: names)) == [
            "p.toml:9: allowed_names: \"*.*.example.com\" is not a DNS name or \"*.\" wildcard: only one leading \"*.\" label may be a wildcard",
            "p.toml:10: allowed_names: \"*\" is not a DNS name or \"*.\" wildcard: only one leading \"*.\" label may be a wildcard",
            "p.toml:11: allowed_names: \"api.*.example.com\" is not a DNS name or \"*.\" wildcard: only one leading \"*.\" label may be a wildcard",
            "p.toml:12: allowed_names: \"a_b.example\" is not a DNS name or \"*.\" wildcard: character \"_\" is not allowed (letters, digits, \"-\" and \".\" only)",
        ])
        let twice = try Self.load(httpHost.replacingOccurrences(of: "[\"api.example.com\"]", with: "[\"a.example\", \"A.example.\"]"))
        defer { Fixtures.remove(twice.directory) }
        #expect(twice.lines == ["p.toml:8: warning: allowed_names lists \"A.example.\" twice"])
        #expect(twice.policy?.upstream.allowedNames == ["a.example"])
    }

    @Test func onFailure() throws {
        #expect(try diagnostics(basePolicy + "\non_failure = \"502\"") == [
            "p.toml:8: on_failure must be \"close\", \"reset\" or \"http-502\", got \"502\""
        ])
        #expect(try diagnostics(basePolicy + "\non_failure = \"http502\"") == [
            "p.toml:8: on_failure must be \"close\", \"reset\" or \"http-502\", got \"http502\" (did you mean \"http-502\"?)"
        ])
        #expect(try diagnostics(basePolicy + "\non_failure = 502") == [
            "p.toml:8: on_failure must be \"close\", \"reset\" or \"http-502\", got an integer"
        ])
    }

    @Test func hostHeaderLimits() throws {
        #expect(try diagnostics(httpHost + "\nhost_header_timeout = \"2m\"") == [
            "p.toml:9: host_header_timeout \"2m\" is out of range: must be between 100ms and 1m"
        ])
        #expect(try diagnostics(httpHost + "\nhost_header_timeout = \"99ms\"") == [
            "p.toml:9: host_header_timeout \"99ms\" is out of range: must be between 100ms and 1m"
        ])
        #expect(try diagnostics(httpHost + "\nhost_header_timeout = \"100ms\"\nmax_header_bytes = 65536") == [])
        #expect(try diagnostics(httpHost + "\nmax_header_bytes = 511") == [
            "p.toml:9: max_header_bytes must be between 512 and 65536, got 511"
        ])
        #expect(try diagnostics(httpHost + "\nmax_header_bytes = 65537") == [
            "p.toml:9: max_header_bytes must be between 512 and 65536, got 65537"
        ])
        #expect(try diagnostics(basePolicy + "\nhost_header_timeout = \"1s\"\nmax_header_bytes = 1024") == [
            "p.toml:8: warning: host_header_timeout only applies to server_name = \"http-host\"; it is ignored here",
            "p.toml:9: warning: max_header_bytes only applies to server_name = \"http-host\"; it is ignored here",
        ])
    }

    // MARK: - [tls] identity and chain

    @Test func verifyDepth() throws {
        #expect(try diagnostics(tls("verify_depth = 0")) == ["p.toml:9: verify_depth must be between 1 and 32, got 0"])
        #expect(try diagnostics(tls("verify_depth = 33")) == ["p.toml:9: verify_depth must be between 1 and 32, got 33"])
        #expect(try diagnostics(tls("verify_depth = \"10\"")) == ["p.toml:9: verify_depth must be an integer, got a string"])
        #expect(try diagnostics(tls("verify_depth = 1")) == [])
        #expect(try diagnostics(tls("verify_depth = 32")) == [])
    }

    @Test func acceptedNames() throws {
        #expect(try diagnostics(tls("accepted_names = [\n  \"a_b.example\",\n  \"*.*.example.com\",\n  \"192.0.2.1\",\n]")) == [
            "p.toml:10: accepted_names: \"a_b.example\" is not a DNS name, \"*.\" wildcard or IP address: character \"_\" is not allowed (letters, digits, \"-\" and \".\" only)",
            "p.toml:11: accepted_names: \"*.*.example.com\" is not a DNS name, \"*.\" wildcard or IP address: only one leading \"*.\" label may be a wildcard",
        ])
        #expect(try diagnostics(tls("accepted_names = \"a.example\"")) == [
            "p.toml:9: accepted_names must be an array of strings such as [\"api.example.com\"], got a string"
        ])
    }

    @Test func pins() throws {
        let message = "is not \"sha256/\" and the base64 of a 32-byte SPKI SHA-256 digest (openssl x509 -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64)"
        let bad = [
            "sha1/" + String(repeating: "A", count: 27) + "=",  // wrong prefix
            "SHA256/" + String(repeating: "A", count: 43) + "=",  // prefix is case-sensitive
            "sha256/not base64!",
            "sha256/" + String(repeating: "A", count: 42) + "==",  // 31 bytes
            "sha256/" + String(repeating: "A", count: 44),  // 33 bytes
            "sha256/",
        ]
        let array = "pins = [\n" + bad.map { "  \"\($0)\",\n" }.joined() + "]"
        #expect(try diagnostics(tls(array)) == bad.enumerated().map { "p.toml:\(10 + $0.offset): pins: \"\($0.element)\" \(message)" })
        #expect(try diagnostics(tls("pins = [\"\(Self.pinA)\", \"\(Self.pinB)\", \"\(Self.pinA)\"]")) == [
            "p.toml:9: warning: pins lists \"\(Self.pinA)\" twice"
        ])
        #expect(try diagnostics(tls("pins = \"\(Self.pinA)\"")) == [
            "p.toml:9: pins must be an array of strings such as [\"sha256/BASE64\"], got a string"
        ])
        let loaded = try Self.load(tls("pins = [\"\(Self.pinB)\", \"\(Self.pinB)\"]"))
        defer { Fixtures.remove(loaded.directory) }
        #expect(loaded.policy?.tls.pins == [Self.pinB])
        #expect(loaded.policy?.tls.pinDigests.map(\.count) == [32])
    }

    @Test func pinOnly() throws {
        #expect(try diagnostics(tls("pin_only = true")) == [
            "p.toml:9: pin_only = true needs pins: list the SPKI pins that identify the server"
        ])
        #expect(try diagnostics(tls("pins = []\npin_only = true")) == [
            "p.toml:10: pin_only = true needs pins: list the SPKI pins that identify the server"
        ])
        #expect(try diagnostics(tls("pin_only = \"yes\"")) == ["p.toml:9: pin_only must be true or false, got a string"])

        let alone = try Self.load(tls("pins = [\"\(Self.pinA)\"]\npin_only = true"))
        defer { Fixtures.remove(alone.directory) }
        #expect(alone.lines == [])
        #expect(alone.policy?.tls.pinOnly == true)
        #expect(alone.policy?.tls.trustSystem == false, "pin_only trusts the pins alone")
        #expect(alone.policy?.tls.caFiles == [])

        let withTrust = try Self.load(tls("trust = [\"system\", \"ca.pem\"]\npins = [\"\(Self.pinA)\"]\npin_only = true"), files: ["ca.pem": Self.cert])
        defer { Fixtures.remove(withTrust.directory) }
        #expect(withTrust.lines == ["p.toml:9: warning: trust is ignored with pin_only"])
        #expect(withTrust.policy?.tls.trustSystem == false)
        #expect(withTrust.policy?.tls.caFiles == [])

        let off = try Self.load(tls("trust = \"system\"\npin_only = false"))
        defer { Fixtures.remove(off.directory) }
        #expect(off.lines == [])
        #expect(off.policy?.tls.trustSystem == true)
    }

    @Test func crl() throws {
        let one = try Self.load(tls("crl = \"crl.pem\""), files: ["crl.pem": Self.crl])
        defer { Fixtures.remove(one.directory) }
        #expect(one.lines == [])
        #expect(one.policy?.tls.crlFiles == [one.directory + "/crl.pem"])

        let two = try Self.load(tls("crl = [\"a.pem\", \"\(one.directory)/crl.pem\"]"), files: ["a.pem": Self.crl])
        defer { Fixtures.remove(two.directory) }
        #expect(two.lines == [])
        #expect(two.policy?.tls.crlFiles == [two.directory + "/a.pem", one.directory + "/crl.pem"])

        #expect(try diagnostics(tls("crl = \"crl.pem\"")) == [
            "p.toml:9: crl: cannot read \"crl.pem\": No such file or directory"
        ])
        #expect(try diagnostics(tls("crl = [\n  \"crl.pem\",\n]"), extraFiles: ["crl.pem": Self.cert]) == [
            "p.toml:10: crl: \"crl.pem\" contains no \"-----BEGIN X509 CRL-----\" line"
        ])
        #expect(try diagnostics(tls("crl = 1")) == [
            "p.toml:9: crl must be a CRL file path (PEM) or an array of them, got an integer"
        ])
        #expect(try diagnostics(tls("crl = [1]")) == ["p.toml:9: crl must contain only strings, got an integer"])
    }

    @Test func ocsp() throws {
        for (word, mode) in [("off", TLSRule.OCSPMode.off), ("if-stapled", .ifStapled), ("require-stapled", .requireStapled)] {
            let loaded = try Self.load(tls("ocsp = \"\(word)\""))
            defer { Fixtures.remove(loaded.directory) }
            #expect(loaded.lines == [])
            #expect(loaded.policy?.tls.ocsp == mode)
        }
        #expect(try diagnostics(tls("ocsp = \"if_stapled\"")) == [
            "p.toml:9: ocsp must be \"off\", \"if-stapled\" or \"require-stapled\", got \"if_stapled\" (did you mean \"if-stapled\"?)"
        ])
        #expect(try diagnostics(tls("ocsp = true")) == [
            "p.toml:9: ocsp must be \"off\", \"if-stapled\" or \"require-stapled\", got a boolean"
        ])
    }

    // MARK: - [tls] algorithms and ALPN

    @Test func cipherLists() throws {
        #expect(try diagnostics(tls("ciphers = \"\"")) == [
            "p.toml:9: ciphers \"\" is not an OpenSSL list such as \"ECDHE+AESGCM:ECDHE+CHACHA20\""
        ])
        #expect(try diagnostics(tls("ciphers = \"ECDHE+AESGCM ECDHE+CHACHA20\"")) == [
            "p.toml:9: ciphers \"ECDHE+AESGCM ECDHE+CHACHA20\" is not an OpenSSL list such as \"ECDHE+AESGCM:ECDHE+CHACHA20\""
        ])
        #expect(try diagnostics(tls("ciphers = \"AES\\u0001\"")) == [
            "p.toml:9: ciphers \"AES\\u0001\" is not an OpenSSL list such as \"ECDHE+AESGCM:ECDHE+CHACHA20\""
        ])
        #expect(try diagnostics(tls("ciphers = 1")) == ["p.toml:9: ciphers must be a string, got an integer"])
        #expect(try diagnostics(tls("ciphers = \"HIGH:!aNULL:!MD5:@STRENGTH\"")) == [])
        // The security level is tlsgate's, never a policy's (0 would allow anonymous suites).
        let seclevel = "sets @SECLEVEL: the security level is not a policy setting (tlsgate keeps the system's, and 0 only for min_version \"1.0\"/\"1.1\"); remove it"
        #expect(try diagnostics(tls("ciphers = \"ALL:@SECLEVEL=0\"")) == ["p.toml:9: ciphers \"ALL:@SECLEVEL=0\" \(seclevel)"])
        #expect(try diagnostics(tls("ciphers = \"HIGH:!aNULL:!MD5:@SECLEVEL=2\"")) == [
            "p.toml:9: ciphers \"HIGH:!aNULL:!MD5:@SECLEVEL=2\" \(seclevel)"
        ])
        #expect(try diagnostics(tls("ciphers = \"aNULL:@seclevel=0\"")) == ["p.toml:9: ciphers \"aNULL:@seclevel=0\" \(seclevel)"])

        let suites = "(TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384, TLS_CHACHA20_POLY1305_SHA256, TLS_AES_128_CCM_SHA256, TLS_AES_128_CCM_8_SHA256)"
        #expect(try diagnostics(tls("ciphersuites = \"TLS_AES_256_GCM_SHA384:TLS_AES_256_CBC_SHA\"")) == [
            "p.toml:9: ciphersuites: \"TLS_AES_256_CBC_SHA\" is not a TLS 1.3 suite \(suites)"
        ])
        #expect(try diagnostics(tls("ciphersuites = \"TLS_AES_256_GCM_SHA384::\"")) == [
            "p.toml:9: ciphersuites: \"\" is not a TLS 1.3 suite \(suites)"
        ])
        #expect(try diagnostics(tls("ciphersuites = \"TLS_AES_256_GCM_SHA384 TLS_AES_128_GCM_SHA256\"")) == [
            "p.toml:9: ciphersuites \"TLS_AES_256_GCM_SHA384 TLS_AES_128_GCM_SHA256\" is not an OpenSSL list such as \"TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256\""
        ])

        #expect(try diagnostics(tls("groups = \"X25519 P-256\"")) == [
            "p.toml:9: groups \"X25519 P-256\" is not an OpenSSL list such as \"X25519:P-256\""
        ])
        #expect(try diagnostics(tls("groups = \"\"")) == [
            "p.toml:9: groups \"\" is not an OpenSSL list such as \"X25519:P-256\""
        ])
        #expect(try diagnostics(tls("groups = \"X25519MLKEM768:secp384r1:P-521\"")) == [])

        #expect(try diagnostics(tls("signature_algorithms = \"RSA/SHA256\"")) == [
            "p.toml:9: signature_algorithms \"RSA/SHA256\" is not an OpenSSL list such as \"ECDSA+SHA256:RSA-PSS+SHA256\""
        ])
        #expect(try diagnostics(tls("signature_algorithms = \"ed25519:ECDSA+SHA384\"")) == [])
    }

    @Test func alpn() throws {
        let long = String(repeating: "x", count: 256)
        #expect(try diagnostics(tls("alpn = [\n  \"\",\n  \"é\",\n  \"\(long)\",\n  \"h2\",\n]")) == [
            "p.toml:10: alpn: \"\" is not a protocol name (1 to 255 printable ASCII characters)",
            "p.toml:11: alpn: \"é\" is not a protocol name (1 to 255 printable ASCII characters)",
            "p.toml:12: alpn: \"\(long)\" is not a protocol name (1 to 255 printable ASCII characters)",
        ])
        #expect(try diagnostics(tls("alpn = [\"h2\\u007F\"]")) == [
            "p.toml:9: alpn: \"h2\\u007F\" is not a protocol name (1 to 255 printable ASCII characters)"
        ])
        #expect(try diagnostics(tls("alpn = [\"my proto\", \"~\"]")) == [], "printable ASCII includes the space")
        #expect(try diagnostics(tls("alpn = \"h2\"")) == [
            "p.toml:9: alpn must be an array of strings such as [\"h2\", \"http/1.1\"], got a string"
        ])
        #expect(try diagnostics(tls("alpn_required = true")) == [
            "p.toml:9: alpn_required = true needs alpn: list the protocols to offer"
        ])
        #expect(try diagnostics(tls("alpn = []\nalpn_required = true")) == [
            "p.toml:10: alpn_required = true needs alpn: list the protocols to offer"
        ])
        #expect(try diagnostics(tls("alpn = [\"h2\"]\nalpn_required = 1")) == [
            "p.toml:10: alpn_required must be true or false, got an integer"
        ])
        let loaded = try Self.load(tls("alpn = [\"\(String(repeating: "y", count: 255))\", \"mqtt\"]"))
        defer { Fixtures.remove(loaded.directory) }
        #expect(loaded.lines == [])
        #expect(loaded.policy?.tls.alpn == [String(repeating: "y", count: 255), "mqtt"])
        #expect(loaded.policy?.tls.alpnRequired == false)
    }

    // MARK: - [tls] client certificate

    @Test func clientCertificateAndKeyGoTogether() throws {
        #expect(try diagnostics(tls("client_key = \"k.pem\"")) == [
            "p.toml:9: client_key needs client_certificate: the certificate (PEM) that goes with it",
            "p.toml:9: client_key: cannot read \"k.pem\": No such file or directory",
        ])
        let certOnly = try Self.load(tls("client_certificate = \"c.pem\""), files: ["c.pem": Self.cert])
        defer { Fixtures.remove(certOnly.directory) }
        #expect(certOnly.lines == [
            "p.toml:9: client_certificate needs client_key: the certificate's private key (PEM, chmod 600)"
        ])
        #expect(try diagnostics(tls("client_certificate = 1\nclient_key = [\"k.pem\"]")) == [
            "p.toml:9: client_certificate must be a PEM file path, got an integer",
            "p.toml:10: client_key must be a PEM file path, got an array",
        ])
    }

    @Test func clientFilesMustHoldWhatTheyClaim() throws {
        let loaded = try Self.load(
            tls("client_certificate = \"c.pem\"\nclient_key = \"k.pem\""), files: ["c.pem": Self.key, "k.pem": Self.cert])
        defer { Fixtures.remove(loaded.directory) }
        #expect(loaded.lines == [
            "p.toml:9: client_certificate: \"c.pem\" contains no \"-----BEGIN CERTIFICATE-----\" line",
            "p.toml:10: client_key: \"k.pem\" contains no \"PRIVATE KEY-----\" line",
        ])
        #expect(loaded.policy == nil)

        let rsa = "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----\n"
        let ok = try Self.load(
            tls("client_certificate = \"c.pem\"\nclient_key = \"k.pem\""), files: ["c.pem": Self.cert, "k.pem": rsa],
            modes: ["c.pem": 0o644, "k.pem": 0o400])
        defer { Fixtures.remove(ok.directory) }
        #expect(ok.lines == [], "a world-readable certificate and a 0400 key are fine")

        let encrypted = "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIE\n-----END ENCRYPTED PRIVATE KEY-----\n"
        let locked = try Self.load(
            tls("client_certificate = \"c.pem\"\nclient_key = \"k.pem\""), files: ["c.pem": Self.cert, "k.pem": encrypted])
        defer { Fixtures.remove(locked.directory) }
        #expect(locked.lines == [
            "p.toml:10: client_key \"k.pem\" is encrypted: tlsgate cannot ask for a passphrase; store it decrypted (openssl pkey -in k.pem -out KEY.pem) and chmod 600"
        ])
    }

    /// The key file's mode: anything for group or others is refused, with the chmod to run.
    @Test func clientKeyPermissions() throws {
        let text = tls("client_certificate = \"c.pem\"\nclient_key = \"k.pem\"")
        for mode: mode_t in [0o644, 0o640, 0o604, 0o620, 0o601, 0o044] {
            let loaded = try Self.load(text, files: ["c.pem": Self.cert, "k.pem": Self.key], modes: ["k.pem": mode])
            defer { Fixtures.remove(loaded.directory) }
            let shown = "0" + String(mode, radix: 8).leftPadded(to: 3)
            #expect(loaded.lines == [
                "p.toml:10: client_key \"k.pem\" is readable by group or others (mode \(shown)): chmod 600 k.pem"
            ])
            #expect(loaded.policy == nil)
        }
        // The exact text of the brief, with the full path as the caller gave it.
        let loaded = try Self.load(text, files: ["c.pem": Self.cert, "k.pem": Self.key], modes: ["k.pem": 0o644])
        defer { Fixtures.remove(loaded.directory) }
        let (_, found) = PolicyLoader.loadFile(loaded.directory + "/p.toml")
        let key = loaded.directory + "/k.pem"
        #expect(found.map(\.description) == [
            "\(loaded.directory)/p.toml:10: client_key \"\(key)\" is readable by group or others (mode 0644): chmod 600 \(key)"
        ])
        chmod(key, 0o600)
        let (policy, none) = PolicyLoader.loadFile(loaded.directory + "/p.toml")
        #expect(none == [])
        #expect(policy?.tls.clientKey == key)
        #expect(policy?.tls.clientCertificate == loaded.directory + "/c.pem")
    }

    // MARK: - Versions

    @Test func legacyVersionsWarn() throws {
        let legacy = try Self.load(tls("min_version = \"1.0\""))
        defer { Fixtures.remove(legacy.directory) }
        #expect(legacy.lines == [
            "p.toml:9: warning: min_version \"1.0\" is below 1.2: this policy runs OpenSSL at security level 0 for a legacy server"
        ])
        #expect(legacy.policy?.tls.minVersion == .tls1_0)
        #expect(legacy.policy?.tls.isLegacy == true)

        let range = try Self.load(tls("min_version = \"1.1\"\nmax_version = \"1.2\""))
        defer { Fixtures.remove(range.directory) }
        #expect(range.lines == [
            "p.toml:9: warning: min_version \"1.1\" is below 1.2: this policy runs OpenSSL at security level 0 for a legacy server"
        ])
        #expect(range.policy?.tls.isLegacy == true)
        #expect(range.policy?.tls.maxVersion == .tls1_2)

        #expect(try diagnostics(tls("min_version = \"1.0\"\nmax_version = \"1.1\"")) == [
            "p.toml:9: warning: min_version \"1.0\" is below 1.2: this policy runs OpenSSL at security level 0 for a legacy server",
            "p.toml:10: warning: max_version \"1.1\" is below 1.2: this policy runs OpenSSL at security level 0 for a legacy server",
        ])
        #expect(try diagnostics(tls("min_version = \"1.2\"")) == [])
        #expect(TLSRule(minVersion: .tls1_1).isLegacy)
        #expect(!TLSRule(minVersion: .tls1_2).isLegacy)
        #expect(!TLSRule(minVersion: .tls1_3).isLegacy)
    }

    // MARK: - Schema

    @Test func nothingPlannedAndTheVerificationHintStays() throws {
        #expect(PolicySchema.plannedKeys.isEmpty)
        let tlsKeys = PolicySchema.tables.first { $0.name == "tls" }?.keys ?? []
        for key in ["verify_depth", "accepted_names", "pins", "pin_only", "crl", "ocsp", "ciphers", "ciphersuites",
                    "groups", "signature_algorithms", "alpn", "alpn_required", "client_certificate", "client_key"] {
            #expect(tlsKeys.contains(key), "\(key)")
        }
        let upstreamKeys = PolicySchema.tables.first { $0.name == "upstream" }?.keys ?? []
        for key in ["allowed_names", "on_failure", "host_header_timeout", "max_header_bytes"] {
            #expect(upstreamKeys.contains(key), "\(key)")
        }
        #expect(try diagnostics(tls("verify_peer = false")) == [
            "p.toml:9: unknown key \"verify_peer\" (verification cannot be turned off; give the server's CA in trust = ...)"
        ])
        #expect(try diagnostics(tls("pin = []")) == ["p.toml:9: unknown key \"pin\" (did you mean \"pins\"?)"])
        #expect(try diagnostics(tls("crls = []")) == ["p.toml:9: unknown key \"crls\" (did you mean \"crl\"?)"])
    }

    // MARK: - Model

    /// Every field of every rule set to something other than its default.
    static let everything = Policy(
        name: "all", sourcePath: "/etc/tlsgate/policies/all.toml",
        match: MatchRule(networks: [IPNetwork("203.0.113.0/24")!, IPNetwork("2001:db8::/32")!], hosts: ["a.example"], port: 80),
        upstream: UpstreamRule(
            port: 443, serverName: .httpHost, connectTimeout: .seconds(2), allowedNames: ["a.example", "*.b.example"],
            onFailure: .http502, hostHeaderTimeout: TimeSpan(milliseconds: 250), maxHeaderBytes: 1024,
            starttls: .smtp, ehloName: "gw.example"),
        tls: TLSRule(
            trustSystem: false, caFiles: ["/ca.pem"], minVersion: .tls1_1, maxVersion: .tls1_3, verifyDepth: 3,
            acceptedNames: ["*.c.example", "192.0.2.1"], pins: [pinA, pinB], pinOnly: true, crlFiles: ["/crl.pem"],
            ocsp: .requireStapled, ciphers: "HIGH:!aNULL", ciphersuites: "TLS_AES_256_GCM_SHA384", groups: "X25519",
            signatureAlgorithms: "ed25519", alpn: ["h2", "http/1.1"], alpnRequired: true,
            clientCertificate: "/client.pem", clientKey: "/client.key"),
        limits: Limits(maxConnections: 7, idleTimeout: .hours(2)),
        firewall: FirewallRule(denyDirect: true))

    @Test func codableRoundTripWithEveryFieldSet() throws {
        let policy = Self.everything
        // Guards the premise: a field added later with its default would not be round-tripped.
        func differing<T>(_ value: T, from defaults: T) -> [String] {
            let base = Dictionary(
                uniqueKeysWithValues: Mirror(reflecting: defaults).children.map { ($0.label!, "\($0.value)") })
            return Mirror(reflecting: value).children.filter { base[$0.label!] == "\($0.value)" }.map { $0.label! }
        }
        #expect(differing(policy.tls, from: TLSRule()) == [])
        #expect(differing(policy.upstream, from: UpstreamRule(port: 1, serverName: .fixed("x"))) == [])

        let json = try JSONEncoder().encode(policy)
        let decoded = try JSONDecoder().decode(Policy.self, from: json)
        #expect(decoded == policy)
        let text = String(decoding: json, as: UTF8.self)
        for fragment in [
            #""onFailure":"http-502""#, #""ocsp":"require-stapled""#, #""minVersion":"1.1""#, #""pinOnly":true"#,
            #""alpnRequired":true"#, #""verifyDepth":3"#, #""maxHeaderBytes":1024"#, #""starttls":"smtp""#,
            #""ehloName":"gw.example""#,
        ] {
            #expect(text.contains(fragment), "\(fragment)")
        }
        #expect(try JSONDecoder().decode(UpstreamRule.FailureAction.self, from: Data(#""reset""#.utf8)) == .reset)
        #expect(try JSONDecoder().decode(TLSRule.OCSPMode.self, from: Data(#""if-stapled""#.utf8)) == .ifStapled)
        #expect(throws: DecodingError.self) { try JSONDecoder().decode(TLSRule.OCSPMode.self, from: Data(#""ifStapled""#.utf8)) }
    }

    @Test func oldInitialisersKeepTheirDefaults() {
        let upstream = UpstreamRule(port: 443, serverName: .fixed("a.example"), connectTimeout: .seconds(1))
        #expect(upstream.allowedNames == [] && upstream.onFailure == .close)
        #expect(upstream.hostHeaderTimeout == .seconds(5) && upstream.maxHeaderBytes == 8192)
        #expect(upstream.starttls == nil && upstream.ehloName == nil)
        let tls = TLSRule(trustSystem: false, caFiles: ["/ca.pem"], minVersion: .tls1_3, maxVersion: nil)
        #expect(tls.verifyDepth == 10 && tls.ocsp == .off && tls.pins == [] && !tls.pinOnly && tls.alpn == [])
    }

    // MARK: - Summary

    @Test func summaryLineShowsTheKnobs() {
        #expect(Self.everything.summaryLine() == "all  match 203.0.113.0/24,2001:db8::/32,a.example port 80 -> upstream port 443 via SMTP STARTTLS, name from HTTP Host (allowed: a.example,*.b.example), pin-only, TLS 1.1-1.3 (legacy), pins 2, crl 1, ocsp require-stapled, accepted names 2, verify depth 3, mTLS, alpn h2,http/1.1 (required), on failure http-502, deny direct")

        let base = Policy(
            name: "p", sourcePath: "p.toml", match: MatchRule(networks: [IPNetwork("192.0.2.0/24")!], hosts: [], port: 80),
            upstream: UpstreamRule(port: 443, serverName: .fixed("a.example"), onFailure: .reset),
            tls: TLSRule(pins: [Self.pinA], ocsp: .ifStapled, alpn: ["h2"]))
        #expect(base.summaryLine() == "p  match 192.0.2.0/24 port 80 -> upstream port 443, name a.example, trust system, TLS >= 1.2, pins 1, ocsp if-stapled, alpn h2, on failure reset")

        let many = Policy(
            name: "h", sourcePath: "h.toml", match: base.match,
            upstream: UpstreamRule(port: 443, serverName: .httpHost, allowedNames: ["a.example", "b.example", "c.example", "d.example", "e.example"]))
        #expect(many.summaryLine() == "h  match 192.0.2.0/24 port 80 -> upstream port 443, name from HTTP Host (allowed: a.example,b.example,c.example +2 more), trust system, TLS >= 1.2")
    }
}

extension String {
    fileprivate func leftPadded(to width: Int) -> String {
        String(repeating: "0", count: max(0, width - count)) + self
    }
}
