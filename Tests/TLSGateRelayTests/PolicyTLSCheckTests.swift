import Foundation
import TLSGatePolicy
import TLSGateRelay
import Testing

/// `check`, `run` and reload build every policy's TLS context before any worker starts:
/// what OpenSSL refuses is a `file:line` error at the line of the key.
@Suite struct PolicyTLSCheckTests {
    private static let head = """
        [match]
        networks = ["198.19.0.10/32"]
        port = 80

        [upstream]
        port = 443
        server_name = "good.test"

        [tls]

        """

    /// The diagnostics of one policy file whose [tls] table ends with `tls` (line 10 on),
    /// loaded with the TLS dry run; `files` are written next to it first.
    private func diagnostics(_ tls: String, files: [String: String] = [:]) throws -> [String] {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tlsgate-tlscheck-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        for (name, text) in files {
            try text.write(to: dir.appendingPathComponent(name), atomically: true, encoding: .utf8)
            if name.hasSuffix(".key") {
                try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: dir.appendingPathComponent(name).path)
            }
        }
        let path = dir.appendingPathComponent("p.toml").path
        try (Self.head + tls + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        let (policy, diagnostics) = PolicyLoader.loadFile(path, tlsCheck: PolicyTLSCheck.check)
        if diagnostics.contains(where: \.isError) { #expect(policy == nil) }
        return diagnostics.map { $0.description.replacingOccurrences(of: dir.path + "/", with: "") }
    }

    @Test func goodSettingsPass() throws {
        #expect(try diagnostics("ciphers = \"ECDHE+AESGCM\"\ngroups = \"X25519:P-256\"\nsignature_algorithms = \"ECDSA+SHA256\"") == [])
    }

    @Test func badAlgorithmListsAreErrorsAtTheirLine() throws {
        #expect(try diagnostics("min_version = \"1.2\"\nciphers = \"ECDHE+AESGCMX\"") == [
            "p.toml:11: ciphers: OpenSSL finds no usable cipher in \"ECDHE+AESGCMX\" (SSL routines: no cipher match): list the TLS 1.2 ciphers OpenSSL knows (openssl ciphers -v 'LIST' shows what a list selects)"
        ])
        // Only anonymous or null suites: nothing is left once they are removed.
        #expect(try diagnostics("ciphers = \"aNULL:eNULL\"") == [
            "p.toml:10: ciphers: OpenSSL finds no usable cipher in \"aNULL:eNULL\" (SSL routines: no cipher match): list the TLS 1.2 ciphers OpenSSL knows (openssl ciphers -v 'LIST' shows what a list selects)"
        ])
        #expect(try diagnostics("groups = \"X25519:P-999\"") == [
            "p.toml:10: groups: OpenSSL refuses the groups \"X25519:P-999\" (SSL routines: passed invalid argument (group 'P-999' cannot be set)): use group names OpenSSL knows, such as X25519:P-256"
        ])
        #expect(try diagnostics("signature_algorithms = \"ECDSA+SHA999\"") == [
            "p.toml:10: signature_algorithms: OpenSSL refuses the signature algorithms \"ECDSA+SHA999\": use algorithms OpenSSL knows, such as ECDSA+SHA256:RSA-PSS+SHA256"
        ])
    }

    @Test func unreadablePEMFilesAreErrorsAtTheirLine() throws {
        let garbageCRL = "-----BEGIN X509 CRL-----\ngarbage\n-----END X509 CRL-----\n"
        let crl = try diagnostics("crl = \"bad.crl\"", files: ["bad.crl": garbageCRL])
        #expect(crl.count == 1)
        #expect(crl.first?.hasPrefix("p.toml:10: crl: cannot load the CRL file ") == true)
        #expect(crl.first?.hasSuffix("bad.crl (PEM routines: bad base64 decode; x509 certificate routines: PEM lib): give PEM CRLs (openssl crl -in FILE -noout checks one)") == true)

        let garbageCert = "-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n"
        let trust = try diagnostics("trust = \"bad.pem\"", files: ["bad.pem": garbageCert])
        #expect(trust.count == 1)
        #expect(trust.first?.hasPrefix("p.toml:10: trust: cannot load the CA file ") == true)
        #expect(trust.first?.hasSuffix("bad.pem (PEM routines: bad base64 decode; x509 certificate routines: PEM lib): give PEM CA certificates (openssl x509 -in FILE -noout checks one)") == true)

        let garbageKey = "-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----\n"
        let client = try diagnostics(
            "client_certificate = \"bad.pem\"\nclient_key = \"bad.key\"",
            files: ["bad.pem": garbageCert, "bad.key": garbageKey])
        #expect(client.count == 1)
        #expect(client.first?.hasPrefix("p.toml:10: client_certificate: cannot load the client certificate ") == true)
    }
}
