#if canImport(Glibc)
import Glibc
#endif

/// Writes to standard error and output with write(2): the command-line messages, without
/// Foundation's FileHandle (the gateway does not load Foundation).
enum StandardStream {
    static func error(_ text: String) { write(STDERR_FILENO, Array(text.utf8)) }
    static func output(_ bytes: [UInt8]) { write(STDOUT_FILENO, bytes) }

    /// All of `bytes`, retried on EINTR and for the rest of a short write; a failed write is
    /// dropped, as the stream may be gone.
    static func write(_ fd: Int32, _ bytes: [UInt8]) {
        bytes.withUnsafeBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let n = Glibc.write(fd, buffer.baseAddress! + offset, buffer.count - offset)
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { return }
                offset += n
            }
        }
    }
}
