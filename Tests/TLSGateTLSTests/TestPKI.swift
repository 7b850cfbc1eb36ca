import Foundation

/// A throw-away PKI made with the openssl tool: a root, and leaves signed by it.
final class TestPKI: @unchecked Sendable {
    let directory: URL

    static let shared: TestPKI = {
        do { return try TestPKI() } catch { fatalError("cannot create the test PKI: \(error)") }
    }()

    init() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("tlsgate-tls-tests-\(getpid())")
        try? FileManager.default.removeItem(at: directory)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                     "-keyout", path("root.key"), "-out", path("root.pem"), "-days", "30",
                     "-subj", "/CN=tlsgate test root", "-addext", "basicConstraints=critical,CA:TRUE",
                     "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
        try leaf("good", san: "DNS:good.test,IP:198.19.0.10")
        try leaf("wild", san: "DNS:*.wild.test")
        // A self-signed leaf, trusted by nobody.
        try openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                     "-keyout", path("self.key"), "-out", path("self.pem"), "-days", "30",
                     "-subj", "/CN=good.test", "-addext", "subjectAltName=DNS:good.test"])
        // An empty CRL of the root (nothing revoked), for policies with `crl`.
        try "[ca]\ndefault_ca = d\n[d]\ndatabase = \(path("index.txt"))\ndefault_md = sha256\ndefault_crl_days = 30\n"
            .write(toFile: path("ca.cnf"), atomically: true, encoding: .utf8)
        try "".write(toFile: path("index.txt"), atomically: true, encoding: .utf8)
        try openssl(["ca", "-gencrl", "-config", path("ca.cnf"), "-keyfile", path("root.key"), "-cert", path("root.pem"),
                     "-out", path("crl.pem")])
    }

    func path(_ name: String) -> String { directory.appendingPathComponent(name).path }

    /// The SPKI pin of a certificate file, computed by the openssl tool.
    func pin(of name: String) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", "openssl x509 -in '\(path(name))' -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64"]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return "sha256/" + String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    private func leaf(_ name: String, san: String) throws {
        try openssl(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                     "-keyout", path("\(name).key"), "-out", path("\(name).csr"), "-subj", "/CN=\(name)"])
        let ext = path("\(name).ext")
        try "subjectAltName=\(san)\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n"
            .write(toFile: ext, atomically: true, encoding: .utf8)
        try openssl(["x509", "-req", "-in", path("\(name).csr"), "-CA", path("root.pem"), "-CAkey", path("root.key"),
                     "-CAcreateserial", "-out", path("\(name).pem"), "-days", "30", "-extfile", ext])
    }

    private func openssl(_ arguments: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw NSError(domain: "TestPKI", code: Int(process.terminationStatus),
                          userInfo: [NSLocalizedDescriptionKey: "openssl \(arguments.joined(separator: " ")) failed"])
        }
    }
}
