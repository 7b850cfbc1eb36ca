import TLSGateSystem

#if canImport(Glibc)
import Glibc
#endif

/// Runs one of the system tools the gateway drives (`nft`, `conntrack`, `ip`): the one place
/// that finds it, starts it, feeds its standard input and collects what it says.
public enum Tool {
    /// The first of `candidates` that is an executable file, if any.
    public static func find(_ candidates: [String]) -> String? {
        candidates.first { access($0, X_OK) == 0 && isRegularFile($0) }
    }

    private static func isRegularFile(_ path: String) -> Bool {
        var info = stat()
        return stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFREG
    }

    /// What a finished run said: its exit status, standard output (empty unless asked
    /// for) and standard error.
    public struct Result: Sendable {
        public var status: Int32
        public var stdout: String
        public var stderr: String

        /// Standard error without surrounding white space, for a message.
        public var message: String {
            String(stderr.drop(while: \.isWhitespace).reversed().drop(while: \.isWhitespace).reversed())
        }
    }

    /// Runs `path` with `arguments`, `input` on its standard input, and waits for it.
    /// Throws only when it cannot be started; a non-zero status is the caller's to judge.
    public static func run(_ path: String, _ arguments: [String], input: String? = nil, captureStdout: Bool = false) throws
        -> Result
    {
        let output = try ToolProcess.run(path, arguments, input: input.map { Array($0.utf8) }, captureStdout: captureStdout)
        return Result(
            status: output.status, stdout: String(decoding: output.stdout, as: UTF8.self),
            stderr: String(decoding: output.stderr, as: UTF8.self))
    }
}
