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
}
