import Foundation
import Testing

@testable import TLSGatePolicy

/// A valid policy body that tests change one line of.
let basePolicy = """
    [match]
    networks = ["203.0.113.0/24"]
    port = 80

    [upstream]
    port = 443
    server_name = "api.example.com"
    """

/// Writes `text` as `name` in a fresh folder, loads it alone, and returns the diagnostics
/// with the folder removed from the path, e.g. `p.toml:3: port must be ...`.
func diagnostics(_ text: String, name: String = "p.toml", extraFiles: [String: String] = [:]) throws -> [String] {
    let directory = try Fixtures.folder(extraFiles.merging([name: text]) { $1 })
    defer { Fixtures.remove(directory) }
    let (_, found) = PolicyLoader.loadFile(directory + "/" + name)
    return found.map { $0.description.replacingOccurrences(of: directory + "/", with: "") }
}

@Suite struct PolicyLoaderTests {
    @Test func loadsFullValidPolicy() throws {
        let path = Fixtures.valid + "/full.toml"
        let (loaded, found) = PolicyLoader.loadFile(path)
        #expect(found == [])
        let policy = try #require(loaded)
        #expect(policy.name == "full")
        #expect(policy.sourcePath == path)
        #expect(policy.match.networks == [IPNetwork("203.0.113.0/24")!, IPNetwork("2001:db8::/32")!])
        #expect(policy.match.hosts == ["api.example.com"])
        #expect(policy.match.port == 80)
        #expect(policy.upstream.port == 443)
        #expect(policy.upstream.serverName == .fixed("api.example.com"))
        #expect(policy.upstream.connectTimeout == TimeSpan(milliseconds: 90_000))
        #expect(policy.tls.trustSystem)
        #expect(policy.tls.caFiles == [Fixtures.valid + "/certs/ca.pem"])
        #expect(policy.tls.minVersion == .tls1_2)
        #expect(policy.tls.maxVersion == .tls1_3)
        #expect(policy.limits.maxConnections == 1000)
        #expect(policy.limits.idleTimeout == .hours(1))
        #expect(policy.firewall.denyDirect)
    }

    @Test func minimalPolicyGetsDefaults() throws {
        let (loaded, found) = PolicyLoader.loadFile(Fixtures.valid + "/minimal.toml")
        #expect(found == [])
        let policy = try #require(loaded)
        #expect(policy.match.networks == [])
        #expect(policy.match.hosts == ["www.example.org"])
        #expect(policy.upstream.serverName == .httpHost)
        #expect(policy.upstream.connectTimeout == .seconds(5))
        #expect(policy.tls == TLSRule(trustSystem: true, caFiles: [], minVersion: .tls1_2, maxVersion: nil))
        #expect(policy.limits == Limits(maxConnections: 10_000, idleTimeout: .minutes(5)))
        #expect(policy.firewall.denyDirect == false)
    }

    @Test func validFolderIgnoresOtherFiles() {
        let result = PolicyLoader.loadDirectory(Fixtures.valid)
        #expect(result.diagnostics == [])
        #expect(result.policies.map(\.name) == ["full", "minimal"])
    }

    @Test func shippedExamplesPass() {
        let result = PolicyLoader.loadDirectory(Fixtures.shippedPolicies)
        #expect(result.diagnosticLines == [])
        #expect(result.policies.map(\.name) == [
            "http-example", "imap-example", "imap-starttls", "ldap-example", "ldap-starttls", "mqtt-example",
            "mysql-starttls", "pop3-starttls", "postgres-direct", "postgres-starttls", "smtp-starttls",
        ])
        #expect(result.policies.map(\.match.port) == [80, 143, 143, 389, 389, 1883, 3306, 110, 5432, 5432, 25])
        #expect(result.policies.map(\.upstream.port) == [443, 993, 143, 636, 389, 8883, 3306, 110, 5432, 5432, 25])
        #expect(result.policies.map(\.upstream.starttls) == [
            nil, nil, .imap, nil, .ldap, nil, .mysql, .pop3, .postgresDirect, .postgres, .smtp,
        ])
    }

    /// Every error in the broken folder, in order, as `tlsgate check` prints them.
    @Test func brokenFolderReportsEveryError() {
        let dir = Fixtures.broken
        let result = PolicyLoader.loadDirectory(dir)
        let verification = "(verification cannot be turned off; give the server's CA in trust = ...)"
        let expected = [
            "\(dir)/a-typos.toml:1: unknown key \"verify\" \(verification)",
            "\(dir)/a-typos.toml:4: port must be an integer, got a string",
            "\(dir)/a-typos.toml:6: missing [upstream] server_name: set the name to verify the server's certificate against, or \"http-host\"",
            "\(dir)/a-typos.toml:8: unknown key \"servr_name\" (did you mean \"server_name\"?)",
            "\(dir)/a-typos.toml:10: unknown table [tsl] (did you mean [tls]?)",
            "\(dir)/a-typos.toml:14: unknown key \"insecure\" \(verification)",

            "\(dir)/b-values.toml:3: networks: \"203.0.113.7/24\" has host bits set: did you mean \"203.0.113.0/24\" (or \"203.0.113.7/32\" for one address)?",
            "\(dir)/b-values.toml:4: networks: \"203.0.113.300\" is not an IP address or network",
            "\(dir)/b-values.toml:5: networks: \"2001:db8::/129\" has a bad prefix length: use 0 to 128 for IPv6",
            "\(dir)/b-values.toml:7: hosts: \"api_example.com\" is not a DNS name: character \"_\" is not allowed (letters, digits, \"-\" and \".\" only)",
            "\(dir)/b-values.toml:7: hosts: \"192.0.2.1\" is an IP address; put it in networks",
            "\(dir)/b-values.toml:8: port must be between 1 and 65535, got 70000",
            "\(dir)/b-values.toml:11: port must be between 1 and 65535, got 0",
            "\(dir)/b-values.toml:12: server_name = \"http-host\" needs allowed_names: list the Host names clients may ask for, e.g. [\"api.example.com\"]",
            "\(dir)/b-values.toml:13: connect_timeout \"10m\" is out of range: must be between 100ms and 5m",
            "\(dir)/b-values.toml:16: trust: cannot read CA file \"\(dir)/missing-ca.pem\": No such file or directory",
            "\(dir)/b-values.toml:16: trust: CA file \"\(dir)/not-a-cert.pem\" contains no certificate (no \"-----BEGIN CERTIFICATE-----\" line)",
            "\(dir)/b-values.toml:17: warning: min_version \"1.1\" is below 1.2: this policy runs OpenSSL at security level 0 for a legacy server",
            "\(dir)/b-values.toml:18: warning: max_version \"1.0\" is below 1.2: this policy runs OpenSSL at security level 0 for a legacy server",
            "\(dir)/b-values.toml:18: max_version \"1.0\" is below min_version \"1.1\"",
            "\(dir)/b-values.toml:21: max_connections must be between 1 and 1000000, got 0",
            "\(dir)/b-values.toml:22: idle_timeout \"5 minutes\" is not a duration: use a number and a unit, e.g. \"250ms\", \"5s\", \"1h30m\"",
            "\(dir)/b-values.toml:25: deny_direct must be true or false, got a string",

            "\(dir)/c-conflict.toml:2: networks: 192.0.2.0/24 overlaps ::ffff:192.0.2.128/121 of policy \"d-conflict\" (\(dir)/d-conflict.toml) on port 389",
            "\(dir)/c-conflict.toml:2: networks: 2001:db8:c::/48 overlaps 2001:db8:c:1::/64 of policy \"d-conflict\" (\(dir)/d-conflict.toml) on port 389",
            "\(dir)/c-conflict.toml:3: hosts: \"shared.example.com\" is also claimed by policy \"d-conflict\" (\(dir)/d-conflict.toml) on port 389",

            "\(dir)/d-conflict.toml:2: networks: ::ffff:192.0.2.128/121 overlaps 192.0.2.0/24 of policy \"c-conflict\" (\(dir)/c-conflict.toml) on port 389",
            "\(dir)/d-conflict.toml:2: networks: 2001:db8:c:1::/64 overlaps 2001:db8:c::/48 of policy \"c-conflict\" (\(dir)/c-conflict.toml) on port 389",
            "\(dir)/d-conflict.toml:3: hosts: \"shared.example.com\" is also claimed by policy \"c-conflict\" (\(dir)/c-conflict.toml) on port 389",

            "\(dir)/f-syntax.toml:3: duplicate key \"port\" (first set on line 2)",
            "\(dir)/f-syntax.toml:4: missing \"=\" after key \"networks\"",
            "\(dir)/f-syntax.toml:5: unterminated string (missing closing \")",
            "\(dir)/f-syntax.toml:6: floats are not supported here",
            "\(dir)/f-syntax.toml:7: duplicate table [match] (first defined on line 1)",
            "\(dir)/f-syntax.toml:8: dates and times are not supported here",

            "\(dir)/g-missing.toml:1: missing [match] networks or hosts: list the destinations this policy takes over",
            "\(dir)/g-missing.toml:1: missing [match] port: set the plain-text port clients dial, e.g. 80",
            "\(dir)/g-missing.toml:2: missing [upstream] server_name: set the name to verify the server's certificate against, or \"http-host\"",

            "\(dir)/h+name.toml: policy name \"h+name\" (from the file name) may only contain letters, digits, \".\", \"_\" and \"-\"",
        ]
        #expect(result.diagnosticLines == expected)
        // Side by side, to make a failure readable.
        for (index, line) in result.diagnosticLines.enumerated() where index >= expected.count || expected[index] != line {
            Issue.record("unexpected at \(index): \(line)")
            break
        }
        #expect(result.errors.count == 37)
        #expect(result.warnings.count == 2)
        #expect(result.filesWithErrors == 7)
        #expect(result.errorSummaryLine == "37 error(s) in 7 file(s)")
        #expect(result.policies.map(\.name) == ["e-conflict-other-port"])
    }

    @Test func missingAndEmptyFolders() throws {
        let missing = Fixtures.directory + "/no-such-folder"
        #expect(PolicyLoader.loadDirectory(missing).diagnosticLines == ["\(missing): no such directory"])
        #expect(PolicyLoader.loadDirectory(missing).hasErrors)
        let empty = try Fixtures.folder(["readme.txt": "no policies here"])
        defer { Fixtures.remove(empty) }
        #expect(
            PolicyLoader.loadDirectory(empty).diagnosticLines
                == ["\(empty): no policy files (*.toml) in this directory"])
        let file = Fixtures.valid + "/full.toml"
        #expect(PolicyLoader.loadDirectory(file).diagnosticLines == ["\(file): not a directory"])
    }

    @Test func relativePathsPrintRelative() throws {
        let cwd = FileManager.default.currentDirectoryPath
        let relative = try #require(
            Fixtures.directory.hasPrefix(cwd + "/") ? String(Fixtures.directory.dropFirst(cwd.count + 1)) : nil,
            "tests must run from the package folder")
        let result = PolicyLoader.loadDirectory(relative + "/valid")
        #expect(result.policies.map(\.sourcePath) == [relative + "/valid/full.toml", relative + "/valid/minimal.toml"])
        #expect(result.policies.first?.tls.caFiles == [Fixtures.valid + "/certs/ca.pem"], "CA paths are made absolute")
        let (_, found) = PolicyLoader.loadFile(relative + "/broken/a-typos.toml")
        #expect(found.first?.description.hasPrefix(relative + "/broken/a-typos.toml:1: unknown key \"verify\"") == true)

        let diagnostic = Diagnostic(
            file: "Policies/x.toml", line: 7, message: "unknown key \"servr_name\" (did you mean \"server_name\"?)")
        #expect(diagnostic.description == "Policies/x.toml:7: unknown key \"servr_name\" (did you mean \"server_name\"?)")
        #expect(Diagnostic.warning("a.toml", nil, "m").description == "a.toml: warning: m")
    }

    @Test func unreadableFile() {
        let path = Fixtures.directory + "/missing.toml"
        let (policy, found) = PolicyLoader.loadFile(path)
        #expect(policy == nil)
        #expect(found.map(\.description) == ["\(path): cannot read: No such file or directory"])
    }
}
