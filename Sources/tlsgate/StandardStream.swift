#if canImport(Glibc)
import Glibc
#endif

/// Writes to standard error and output with write(2): command-line messages and log lines,
/// without Foundation's FileHandle (the gateway does not load Foundation).
enum StandardStream {
    static func error(_ text: String) {
        var text = text
        text.withUTF8 { write(STDERR_FILENO, UnsafeRawBufferPointer($0)) }
    }

    /// All of `bytes` in as few write(2) calls as the kernel allows (one for a log line),
    /// retried on EINTR and for the rest of a short write; a failed write is dropped, as
    /// the stream may be gone.
    static func write(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) {
        var offset = 0
        while offset < bytes.count {
            let n = Glibc.write(fd, bytes.baseAddress! + offset, bytes.count - offset)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return }
            offset += n
        }
    }
}
