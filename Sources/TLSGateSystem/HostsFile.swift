#if canImport(Glibc)
import Glibc
#endif

/// /etc/hosts, read the way the C library does for `hosts: files dns`: a name found there
/// is answered from there, before any nameserver is asked.
public enum HostsFile {
    public static let maximumFileSize = 1 << 20

    /// The addresses `name` has in a hosts text (case-insensitive, trailing dot ignored),
    /// sorted; empty when it has none.
    public static func addresses(of name: String, in text: String) -> [String] {
        let wanted = normalized(name)
        var result: Set<String> = []
        for line in text.split(whereSeparator: { $0 == "\n" }) {
            let content = line.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
            let words = content.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" })
            guard words.count >= 2, DNSStubResolver.socketAddress(String(words[0])) != nil else { continue }
            if words.dropFirst().contains(where: { normalized(String($0)) == wanted }) {
                result.insert(String(words[0]))
            }
        }
        return result.sorted()
    }

    /// The addresses of `name` in /etc/hosts.
    public static func systemAddresses(of name: String, path: String = "/etc/hosts") -> [String] {
        guard let text = readBounded(path, limit: maximumFileSize) else { return [] }
        return addresses(of: name, in: text)
    }

    static func normalized(_ name: String) -> String {
        let lower = name.lowercased()
        return lower.hasSuffix(".") ? String(lower.dropLast()) : lower
    }

    /// At most `limit` bytes of a regular file, or nil when it cannot be read.
    static func readBounded(_ path: String, limit: Int) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else { return nil }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16384)
        while bytes.count < limit {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, min($0.count, limit - bytes.count)) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            bytes += chunk[0..<n]
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
