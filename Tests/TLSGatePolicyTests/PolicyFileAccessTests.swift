import Foundation
import Testing

@testable import TLSGatePolicy

@Suite struct PolicyFileAccessTests {
    @Test func everyUnreadableFileIsAnErrorOnItsOwnLine() throws {
        let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
        let crl = "-----BEGIN X509 CRL-----\nMIIB\n-----END X509 CRL-----\n"
        let dir = try Fixtures.folder([
            "ca.pem": pem, "other.pem": pem, "list.crl": crl,
            "p.toml": """
                [match]
                networks = ["203.0.113.0/24"]
                port = 80
                [upstream]
                port = 443
                server_name = "api.example.com"
                [tls]
                trust = ["system",
                  "ca.pem",
                  "other.pem"]
                crl = "list.crl"
                """,
        ])
        defer { Fixtures.remove(dir) }
        let loaded = PolicyLoader.loadDirectory(dir)
        #expect(loaded.diagnostics.filter(\.isError).isEmpty, "\(loaded.diagnostics)")
        let unreadable: Set<String> = ["ca.pem", "list.crl"]
        let diagnostics = PolicyFileAccess.diagnostics(for: loaded.policies, account: "tlsgate") { path in
            unreadable.contains(String(path.split(separator: "/").last!)) ? "Permission denied" : nil
        }
        #expect(diagnostics.map(\.line) == [9, 11])
        #expect(diagnostics.allSatisfy { $0.isError && $0.file.hasSuffix("p.toml") })
        #expect(
            diagnostics.first?.message.hasPrefix("trust: ") == true
                && diagnostics.first?.message.contains("/ca.pem cannot be read by the account \"tlsgate\" the workers run as (Permission denied)") == true,
            "\(diagnostics)")
        #expect(diagnostics.last?.message.hasPrefix("crl: ") == true)
        // Readable files say nothing.
        #expect(PolicyFileAccess.diagnostics(for: loaded.policies, account: "tlsgate") { _ in nil }.isEmpty)
    }

    @Test func aClientKeyAnotherPolicysAccountCanReadIsAnError() throws {
        let certificate = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
        let key = "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n"
        let policy = basePolicy + "\n[tls]\nclient_certificate = \"NAME.crt\"\nclient_key = \"NAME.key\"\n"
        let dir = try Fixtures.folder([
            "web.toml": policy.replacingOccurrences(of: "NAME", with: "web"),
            "mail.toml": policy.replacingOccurrences(of: "NAME", with: "mail").replacingOccurrences(of: "203.0.113.0", with: "192.0.2.0"),
            "web.crt": certificate, "web.key": key, "mail.crt": certificate, "mail.key": key,
        ])
        defer { Fixtures.remove(dir) }
        for name in ["web.key", "mail.key"] { chmod(dir + "/" + name, 0o600) }
        let loaded = PolicyLoader.loadDirectory(dir)
        let policies = loaded.policies
        #expect(policies.count == 2, "\(loaded.diagnostics)")
        let account: (Policy) -> String = { "tlsgate-w-\($0.name)" }
        // web's key is readable by mail's account too; mail's key by its own account only.
        let found = PolicyFileAccess.clientKeysShared(by: policies, account: account) { path, other in
            path.hasSuffix("/web.key") || path.hasSuffix("/\(other.name).key")
        }
        #expect(found.map(\.description) == [
            "\(dir)/web.toml:10: client_key: \(dir)/web.key can also be read by the account \"tlsgate-w-mail\" of policy mail: with worker_user = \"per-policy\" a client key must be readable by its own policy's account only (chown tlsgate-w-web and chmod 600)"
        ])
        #expect(PolicyFileAccess.clientKeysShared(by: policies, account: account) { path, other in path.hasSuffix("/\(other.name).key") }.isEmpty)
    }
}
