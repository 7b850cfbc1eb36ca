import Foundation
import Testing

@testable import TLSGatePolicy

/// One rule at a time, each with its exact message. Policies are written to a scratch
/// folder as `p.toml`; see `diagnostics(_:)`.
@Suite struct PolicyValidationTests {
    private func replacing(_ old: String, with new: String) -> String {
        precondition(basePolicy.contains(old))
        return basePolicy.replacingOccurrences(of: old, with: new)
    }

    @Test func basePolicyIsValid() throws {
        #expect(try diagnostics(basePolicy) == [])
    }

    @Test func didYouMeanWithinEditDistanceTwo() throws {
        #expect(
            try diagnostics(replacing("server_name", with: "servr_name")) == [
                "p.toml:5: missing [upstream] server_name: set the name to verify the server's certificate against, or \"http-host\"",
                "p.toml:7: unknown key \"servr_name\" (did you mean \"server_name\"?)",
            ])
        #expect(try diagnostics(basePolicy + "\nconect_timout = \"5s\"") == [
            "p.toml:8: unknown key \"conect_timout\" (did you mean \"connect_timeout\"?)"
        ])
        #expect(try diagnostics(basePolicy + "\nsni = \"x\"") == ["p.toml:8: unknown key \"sni\""])
        #expect(try diagnostics(basePolicy + "\n[limit]\nmax_connections = 5") == [
            "p.toml:8: unknown table [limit] (did you mean [limits]?)"
        ])
        #expect(try diagnostics(basePolicy + "\n[proxy]") == [
            "p.toml:8: unknown table [proxy] (known tables: [match], [upstream], [tls], [limits], [firewall])"
        ])
        #expect(try diagnostics(basePolicy + "\n[tls.pins]") == [
            "p.toml:8: unknown table [tls.pins] ([tls] has no sub-tables)"
        ])
    }

    @Test func editDistance() {
        #expect(Spelling.editDistance("servr_name", "server_name") == 1)
        #expect(Spelling.editDistance("kitten", "sitting") == 3)
        #expect(Spelling.editDistance("", "abc") == 3)
        #expect(Spelling.closest(to: "prot", among: ["port", "hosts"]) == "port")
        #expect(Spelling.closest(to: "xyz", among: ["port", "hosts"]) == nil)
    }

    @Test func keyInTheWrongTable() throws {
        #expect(try diagnostics(basePolicy + "\ndeny_direct = true") == [
            "p.toml:8: unknown key \"deny_direct\" in [upstream] (it belongs in [firewall])"
        ])
        #expect(try diagnostics("port = 80\n" + basePolicy) == [
            "p.toml:1: unknown key \"port\" outside any table (it belongs in [match] or [upstream])"
        ])
    }

    @Test func verificationCannotBeTurnedOff() throws {
        let hint = "(verification cannot be turned off; give the server's CA in trust = ...)"
        for key in ["verify", "insecure", "verify_hostname", "insecure_skip_verify", "skip_verify"] {
            #expect(try diagnostics(basePolicy + "\n[tls]\n\(key) = false") == ["p.toml:9: unknown key \"\(key)\" \(hint)"])
        }
    }

    @Test func verificationKeys() throws {
        let pin = "sha256/" + String(repeating: "A", count: 43) + "="
        #expect(try diagnostics(basePolicy + "\n[tls]\npins = [\"\(pin)\", \"\(pin)\"]") == [
            "p.toml:9: warning: pins lists \"\(pin)\" twice"
        ])
        #expect(try diagnostics(basePolicy + "\n[tls]\npins = [\"sha256/AAAA\"]") == [
            "p.toml:9: pins: \"sha256/AAAA\" is not \"sha256/\" and the base64 of a 32-byte SPKI SHA-256 digest (openssl x509 -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64)"
        ])
        #expect(try diagnostics(basePolicy + "\n[tls]\npin_only = true") == [
            "p.toml:9: pin_only = true needs pins: list the SPKI pins that identify the server"
        ])
        #expect(try diagnostics(basePolicy + "\n[tls]\nocsp = \"required\"") == [
            "p.toml:9: ocsp must be \"off\", \"if-stapled\" or \"require-stapled\", got \"required\""
        ])
        #expect(try diagnostics(basePolicy + "\n[tls]\nalpn_required = true") == [
            "p.toml:9: alpn_required = true needs alpn: list the protocols to offer"
        ])
        #expect(try diagnostics(basePolicy + "\n[tls]\nciphersuites = \"TLS_AES_256_GCM_SHA384:TLS_FOO\"") == [
            "p.toml:9: ciphersuites: \"TLS_FOO\" is not a TLS 1.3 suite (TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384, TLS_CHACHA20_POLY1305_SHA256, TLS_AES_128_CCM_SHA256, TLS_AES_128_CCM_8_SHA256)"
        ])
        #expect(try diagnostics(basePolicy + "\n[tls]\nclient_certificate = \"c.pem\"") == [
            "p.toml:9: client_certificate needs client_key: the certificate's private key (PEM, chmod 600)",
            "p.toml:9: client_certificate: cannot read \"c.pem\": No such file or directory",
        ].map { $0 })
        #expect(try diagnostics(basePolicy + "\n[tls]\nverify_depth = 0") == [
            "p.toml:9: verify_depth must be between 1 and 32, got 0"
        ])
        #expect(try diagnostics(basePolicy + "\n[upstream2]\n").count == 1)
    }

    @Test func clientKeyMustBePrivate() throws {
        let cert = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
        let key = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n"
        let directory = try Fixtures.folder([
            "p.toml": basePolicy + "\n[tls]\nclient_certificate = \"c.pem\"\nclient_key = \"k.pem\"\n",
            "c.pem": cert, "k.pem": key,
        ])
        defer { Fixtures.remove(directory) }
        chmod(directory + "/k.pem", 0o644)
        let (_, open) = PolicyLoader.loadFile(directory + "/p.toml")
        #expect(open.map(\.description) == [
            "\(directory)/p.toml:10: client_key \"\(directory)/k.pem\" is readable by group or others (mode 0644): chmod 600 \(directory)/k.pem"
        ])
        chmod(directory + "/k.pem", 0o600)
        let (policy, closed) = PolicyLoader.loadFile(directory + "/p.toml")
        #expect(closed == [])
        #expect(policy?.tls.clientKey == directory + "/k.pem")
        #expect(policy?.tls.clientCertificate == directory + "/c.pem")
    }

    @Test func httpHostNeedsAllowedNames() throws {
        #expect(try diagnostics(replacing("server_name = \"api.example.com\"", with: "server_name = \"http-host\"")) == [
            "p.toml:7: server_name = \"http-host\" needs allowed_names: list the Host names clients may ask for, e.g. [\"api.example.com\"]"
        ])
        #expect(try diagnostics(replacing("server_name = \"api.example.com\"", with: "server_name = \"http-host\"\nallowed_names = [\"*.example.com\", \"a_b.example\"]")) == [
            "p.toml:8: allowed_names: \"a_b.example\" is not a DNS name or \"*.\" wildcard: character \"_\" is not allowed (letters, digits, \"-\" and \".\" only)"
        ])
        #expect(try diagnostics(replacing("server_name = \"api.example.com\"", with: "server_name = \"api.example.com\"\nallowed_names = [\"a.example\"]")) == [
            "p.toml:8: allowed_names only applies to server_name = \"http-host\""
        ])
        #expect(try diagnostics(replacing("server_name = \"api.example.com\"", with: "server_name = \"api.example.com\"\non_failure = \"http-502\"")) == [])
    }

    @Test func wrongTypes() throws {
        #expect(try diagnostics(replacing("port = 80", with: "port = \"80\"")) == [
            "p.toml:3: port must be an integer, got a string"
        ])
        #expect(try diagnostics(replacing("port = 443", with: "port = [443]")) == [
            "p.toml:6: port must be an integer, got an array"
        ])
        #expect(try diagnostics(replacing("networks = [\"203.0.113.0/24\"]", with: "networks = \"203.0.113.0/24\"")) == [
            "p.toml:2: networks must be an array of strings such as [\"203.0.113.0/24\"], got a string"
        ])
        #expect(try diagnostics(replacing("networks = [\"203.0.113.0/24\"]", with: "networks = [\n  \"203.0.113.0/24\",\n  24,\n]")) == [
            "p.toml:4: networks must contain only strings, got an integer"
        ])
        #expect(try diagnostics(replacing("server_name = \"api.example.com\"", with: "server_name = true")) == [
            "p.toml:7: server_name must be a string, got a boolean"
        ])
        #expect(try diagnostics(basePolicy + "\nconnect_timeout = 5") == [
            "p.toml:8: connect_timeout must be a duration string such as \"5s\", got an integer"
        ])
        #expect(try diagnostics(basePolicy + "\n[tls]\ntrust = true\nmin_version = 12") == [
            "p.toml:9: trust must be \"system\", a CA bundle path, or an array of them, got a boolean",
            "p.toml:10: min_version must be a string such as \"1.2\", got an integer",
        ])
        #expect(try diagnostics(basePolicy + "\n[limits]\nmax_connections = \"10\"") == [
            "p.toml:9: max_connections must be an integer, got a string"
        ])
    }

    @Test func ports() throws {
        #expect(try diagnostics(replacing("port = 80", with: "port = 65536")) == [
            "p.toml:3: port must be between 1 and 65535, got 65536"
        ])
        #expect(try diagnostics(replacing("port = 80", with: "port = -1")) == [
            "p.toml:3: port must be between 1 and 65535, got -1"
        ])
        #expect(try diagnostics(replacing("port = 80\n", with: "")) == [
            "p.toml:1: missing [match] port: set the plain-text port clients dial, e.g. 80"
        ])
        #expect(try diagnostics(replacing("port = 443\n", with: "")) == [
            "p.toml:5: missing [upstream] port: set the server's TLS port, e.g. 443"
        ])
        #expect(try diagnostics(replacing("port = 443", with: "port = 80")) == [
            "p.toml:6: warning: upstream port 80 is also the match port: clients dialing it probably speak TLS already"
        ])
    }

    @Test func destinations() throws {
        #expect(try diagnostics(replacing("networks = [\"203.0.113.0/24\"]", with: "networks = []")) == [
            "p.toml:2: missing [match] networks or hosts: list the destinations this policy takes over"
        ])
        #expect(try diagnostics(replacing("networks = [\"203.0.113.0/24\"]", with: "hosts = [\"*.example.com\", \"a..b\", \"-a.com\", \"x.123\", \"ok.example.\"]")) == [
            "p.toml:2: hosts: \"*.example.com\" is not a DNS name: wildcards are not supported; list each name",
            "p.toml:2: hosts: \"a..b\" is not a DNS name: it has an empty label",
            "p.toml:2: hosts: \"-a.com\" is not a DNS name: label \"-a\" starts or ends with \"-\"",
            "p.toml:2: hosts: \"x.123\" is not a DNS name: the last label is all digits",
        ])
        #expect(try diagnostics(replacing("networks = [\"203.0.113.0/24\"]", with: "networks = [\"203.0.113.0/24\", \"203.0.113.64/26\"]\nhosts = [\"a.example\", \"A.example\"]")) == [
            "p.toml:2: warning: networks: 203.0.113.64/26 overlaps 203.0.113.0/24 listed on line 2",
            "p.toml:3: warning: hosts: \"a.example\" is already listed on line 3",
        ])
    }

    @Test func serverNames() throws {
        #expect(try diagnostics(replacing("api.example.com", with: "api example")) == [
            "p.toml:7: server_name \"api example\" is not a DNS name, an IP address or \"http-host\": character \" \" is not allowed (letters, digits, \"-\" and \".\" only)"
        ])
        let directory = try Fixtures.folder(["p.toml": replacing("\"api.example.com\"", with: "\"2001:DB8::1\"")])
        defer { Fixtures.remove(directory) }
        #expect(PolicyLoader.loadFile(directory + "/p.toml").0?.upstream.serverName == .fixed("2001:db8::1"))
    }

    @Test func durations() throws {
        #expect(try diagnostics(basePolicy + "\nconnect_timeout = \"50ms\"") == [
            "p.toml:8: connect_timeout \"50ms\" is out of range: must be between 100ms and 5m"
        ])
        #expect(try diagnostics(basePolicy + "\nconnect_timeout = \"5\"") == [
            "p.toml:8: connect_timeout \"5\" is not a duration: use a number and a unit, e.g. \"250ms\", \"5s\", \"1h30m\""
        ])
        #expect(try diagnostics(basePolicy + "\n[limits]\nidle_timeout = \"25h\"") == [
            "p.toml:9: idle_timeout \"25h\" is out of range: must be between 1s and 24h"
        ])
        #expect(try diagnostics(basePolicy + "\n[limits]\nidle_timeout = \"24h\"\nmax_connections = 1_000_000") == [])
    }

    @Test func tlsVersions() throws {
        #expect(try diagnostics(basePolicy + "\n[tls]\nmin_version = \"1.1\"") == [
            "p.toml:9: warning: min_version \"1.1\" is below 1.2: this policy runs OpenSSL at security level 0 for a legacy server"
        ])
        #expect(try diagnostics(basePolicy + "\n[tls]\nmin_version = \"1.3\"\nmax_version = \"1.2\"") == [
            "p.toml:10: max_version \"1.2\" is below min_version \"1.3\""
        ])
        #expect(try diagnostics(basePolicy + "\n[tls]\nmax_version = \"1.4\"") == [
            "p.toml:9: max_version \"1.4\" is not a TLS version: use \"1.2\" or \"1.3\" (\"1.0\" and \"1.1\" for legacy servers)"
        ])
        #expect(try diagnostics(basePolicy + "\n[tls]\nmin_version = \"1.3\"\nmax_version = \"1.3\"") == [])
        #expect(TLSProtocolVersion.tls1_2 < .tls1_3)
        #expect(TLSProtocolVersion.tls1_0 < .floor)
    }

    @Test func trust() throws {
        let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
        let text = basePolicy + "\n[tls]\ntrust = [\"ca.pem\", \"system\", \"./ca.pem\"]"
        let directory = try Fixtures.folder(["p.toml": text, "ca.pem": pem])
        defer { Fixtures.remove(directory) }
        let (policy, found) = PolicyLoader.loadFile(directory + "/p.toml")
        #expect(found.map(\.description) == ["\(directory)/p.toml:9: warning: trust lists \"./ca.pem\" twice"])
        #expect(policy?.tls.trustSystem == true)
        #expect(policy?.tls.caFiles == [directory + "/ca.pem"])

        let only = try Fixtures.folder(["p.toml": basePolicy + "\n[tls]\ntrust = \"ca.pem\"", "ca.pem": pem])
        defer { Fixtures.remove(only) }
        #expect(PolicyLoader.loadFile(only + "/p.toml").0?.tls.trustSystem == false)

        #expect(try diagnostics(basePolicy + "\n[tls]\ntrust = []") == [
            "p.toml:9: trust is empty: give \"system\" and/or a CA bundle path"
        ])
        #expect(try diagnostics(basePolicy + "\n[tls]\ntrust = [\"system\", 3]") == [
            "p.toml:9: trust must contain only strings, got an integer"
        ])
        #expect(try diagnostics(basePolicy + "\n[tls]\ntrust = \"certs/missing.pem\"") == [
            "p.toml:9: trust: cannot read CA file \"certs/missing.pem\": No such file or directory"
        ])
    }

    @Test func caFileThatIsADirectory() throws {
        let directory = try Fixtures.folder(["p.toml": basePolicy + "\n[tls]\ntrust = \"/\""])
        defer { Fixtures.remove(directory) }
        let (_, found) = PolicyLoader.loadFile(directory + "/p.toml")
        #expect(found.map(\.description) == ["\(directory)/p.toml:9: trust: cannot read CA file \"/\": is a directory"])
    }

    @Test func policyNames() {
        #expect(PolicyFileDecoder.isValidName("http-example.v2_a"))
        #expect(!PolicyFileDecoder.isValidName("my policy"))
        #expect(!PolicyFileDecoder.isValidName("é"))
        #expect(!PolicyFileDecoder.isValidName(""))
    }

    @Test func syntaxErrorsComeFirstAndAlone() throws {
        #expect(try diagnostics(basePolicy + "\nbogus = 1.5") == ["p.toml:8: floats are not supported here"])
    }

    @Test func conflictsOnlyOnTheSamePort() throws {
        let other = basePolicy.replacingOccurrences(of: "203.0.113.0/24", with: "203.0.113.128/25")
        let directory = try Fixtures.folder(["a.toml": basePolicy, "b.toml": other])
        defer { Fixtures.remove(directory) }
        let result = PolicyLoader.loadDirectory(directory)
        #expect(result.diagnosticLines == [
            "\(directory)/a.toml:2: networks: 203.0.113.0/24 overlaps 203.0.113.128/25 of policy \"b\" (\(directory)/b.toml) on port 80",
            "\(directory)/b.toml:2: networks: 203.0.113.128/25 overlaps 203.0.113.0/24 of policy \"a\" (\(directory)/a.toml) on port 80",
        ])
        #expect(result.policies == [])

        let otherPort = other.replacingOccurrences(of: "port = 80", with: "port = 8080")
        let fine = try Fixtures.folder(["a.toml": basePolicy, "b.toml": otherPort])
        defer { Fixtures.remove(fine) }
        #expect(PolicyLoader.loadDirectory(fine).diagnostics == [])
        #expect(PolicyLoader.loadDirectory(fine).policies.count == 2)
    }
}
