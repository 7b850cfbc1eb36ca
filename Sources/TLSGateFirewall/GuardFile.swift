#if canImport(Glibc)
import Glibc
#endif

/// The fail-closed guard saved to a file, so it can be put back where the kernel lost it:
/// at boot (before the network is up) and before every start, even one that then fails on
/// a broken config. The supervisor saves it after each successful application of its
/// tables; `tlsgate rules --restore-guard` applies the saved file.
///
/// The file holds exactly what `Ruleset.guardBody` gives, behind the create-then-delete
/// preamble of that one table, so restoring it never touches anything else; a file that
/// names any other table is refused.
public enum GuardFile {
    public struct Failure: Error, Sendable, CustomStringConvertible {
        public let description: String
    }

    static let header = "# tlsgate: fail-closed guard (inet \(Ruleset.guardTableName)); written by `tlsgate run`, applied by `tlsgate rules --restore-guard`\n"
    /// Largest guard file restored.
    static let maximumSize = 16 << 20

    /// The script saved and restored: the guard table alone, replaced atomically.
    public static func script(for plan: InterceptionPlan) -> String {
        header
            + "table \(Ruleset.tableFamily) \(Ruleset.guardTableName)\n"
            + "delete table \(Ruleset.tableFamily) \(Ruleset.guardTableName)\n"
            + Ruleset.guardBody(for: plan)
    }

    /// Writes the guard for `plan` to `path` atomically (a temporary file in the same
    /// folder, written and synced, then renamed over it), mode 0600.
    public static func save(_ plan: InterceptionPlan, to path: String) throws {
        let bytes = Array(script(for: plan).utf8)
        let temporary = path + ".tmp"
        unlink(temporary)  // a leftover of a run killed mid-save
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else {
            throw Failure(
                description: "cannot write \(temporary): \(String(cString: strerror(errno))): check that its folder exists and the gateway's account may write there")
        }
        var written = 0
        var failure: Int32 = 0
        bytes.withUnsafeBytes { buffer in
            while written < buffer.count {
                let n = write(fd, buffer.baseAddress! + written, buffer.count - written)
                if n < 0 && errno == EINTR { continue }
                if n <= 0 {
                    failure = n < 0 ? errno : EIO
                    return
                }
                written += n
            }
        }
        if failure == 0 && fsync(fd) != 0 { failure = errno }
        if close(fd) != 0 && failure == 0 { failure = errno }
        if failure == 0 && rename(temporary, path) != 0 { failure = errno }
        if failure != 0 {
            unlink(temporary)
            throw Failure(description: "cannot save the guard to \(path): \(String(cString: strerror(failure)))")
        }
    }

    /// Checks a saved guard: our header, and no table but the guard.
    public static func validate(_ text: String) throws {
        guard text.hasPrefix(header) else {
            throw Failure(description: "not a guard saved by tlsgate (the first line differs)")
        }
        for line in text.split(separator: "\n") {
            let words = line.split(separator: " ")
            guard let first = words.first else { continue }
            if first == "table" || first == "delete" {
                let table = first == "delete" ? Array(words.dropFirst()) : Array(words)
                guard table.count >= 3, table[0] == "table", table[1] == Substring(Ruleset.tableFamily),
                    table[2] == Substring(Ruleset.guardTableName)
                else {
                    throw Failure(description: "the saved guard names another table: \(line)")
                }
            }
        }
    }

    /// Applies the guard saved at `path`; false when there is no such file.
    @discardableResult
    public static func restore(from path: String) throws -> Bool {
        guard let text = try read(path) else { return false }
        do {
            try validate(text)
        } catch let failure as Failure {
            throw Failure(description: "\(path): \(failure.description)")
        }
        try NFTables.apply(text)
        return true
    }

    /// The saved guard's text, nil when there is no file. A symbolic link, a FIFO or
    /// anything but a regular file of at most `maximumSize` bytes is refused (opened
    /// without following links and without blocking, checked on the open descriptor).
    static func read(_ path: String) throws -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK)
        if fd < 0 && errno == ENOENT { return nil }
        let refused = Failure(description: "\(path): not a readable regular file of at most \(maximumSize) bytes")
        guard fd >= 0 else { throw refused }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG, info.st_size <= maximumSize else { throw refused }
        var bytes = [UInt8](repeating: 0, count: Int(info.st_size) + 1)
        var count = 0
        while count < bytes.count {
            let n = bytes.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress! + count, $0.count - count) }
            if n < 0 && errno == EINTR { continue }
            if n < 0 { throw refused }
            if n == 0 { break }
            count += n
        }
        guard count <= maximumSize else { throw refused }  // it grew while being read
        return String(decoding: bytes[..<count], as: UTF8.self)
    }
}
