import FoundationEssentials
import TLSGatePolicy

#if canImport(Glibc)
import Glibc
#endif

/// A policy's version for the worker table: everything its worker is started with (the
/// assignment, the log settings) and the SHA-256 of every file it names (CA bundles, CRLs,
/// the client certificate and key). A changed CA file is a changed policy on SIGHUP.
enum PolicyFingerprint {
    /// Files larger than this are fingerprinted by their size and time only.
    static let maximumHashedSize = 64 << 20

    static func of(assignment payload: Data, log: GatewayConfig.Log, policy: Policy) -> String {
        var digest = SHA256()
        digest.update(payload)
        digest.update(Array("\nlog \(log.format.rawValue) \(log.level)\n".utf8))
        for path in files(of: policy) {
            digest.update(Array("file \(path) \(contentDigest(path))\n".utf8))
        }
        return digest.finish()
    }

    static func files(of policy: Policy) -> [String] {
        policy.tls.caFiles + policy.tls.crlFiles + [policy.tls.clientCertificate, policy.tls.clientKey].compactMap { $0 }
    }

    /// The SHA-256 of a regular file's contents, or a word saying why there is none. Opened
    /// without blocking (a FIFO in place of a CA file does not hang a reload).
    static func contentDigest(_ path: String) -> String {
        let fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY)
        guard fd >= 0 else { return "unreadable:\(errno)" }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { return "unreadable:\(errno)" }
        guard (info.st_mode & S_IFMT) == S_IFREG else { return "not-a-regular-file" }
        if Int(info.st_size) > maximumHashedSize {
            return "large:\(info.st_size):\(info.st_mtim.tv_sec).\(info.st_mtim.tv_nsec)"
        }
        var digest = SHA256()
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n < 0 { return "unreadable:\(errno)" }
            if n == 0 { break }
            digest.update(buffer[0..<n])
        }
        return digest.finish()
    }
}
