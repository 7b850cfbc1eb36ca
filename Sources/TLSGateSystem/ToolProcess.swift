import CTLSGateLinux

#if canImport(Glibc)
import Glibc
#endif

/// Runs a system tool to its end (`nft`, `conntrack`, `ip`) with posix_spawn: no Foundation
/// `Process`, whose library (and ICU behind it) the gateway does not load.
public enum ToolProcess {
    /// What a finished run said.
    public struct Output: Sendable {
        /// The exit status, or 128 + the signal that killed it.
        public var status: Int32
        public var stdout: [UInt8]
        public var stderr: [UInt8]
    }

    /// Most a run collects of each stream; more is read and dropped (a tool's answer here
    /// is a ruleset listing or a one-line message).
    public static let outputLimit = 64 << 20

    /// Runs `path` with `arguments` (argv[1...]), `input` on its standard input (or
    /// /dev/null), and waits for it. Throws only when it cannot be started.
    public static func run(_ path: String, _ arguments: [String], input: [UInt8]?, captureStdout: Bool) throws(SystemError)
        -> Output
    {
        let argv = ([path] + arguments).map { strdup($0) } + [nil]
        defer { for p in argv { free(p) } }
        var out: UnsafeMutablePointer<UInt8>?
        var err: UnsafeMutablePointer<UInt8>?
        var outLength = 0
        var errLength = 0
        var status: Int32 = 0
        let rc: Int32
        if let input {
            rc = input.withUnsafeBufferPointer { bytes in
                tg_linux_run_tool(
                    path, argv, bytes.baseAddress ?? UnsafePointer(bitPattern: 1), bytes.count, captureStdout ? 1 : 0,
                    outputLimit, &out, &outLength, &err, &errLength, &status)
            }
        } else {
            rc = tg_linux_run_tool(
                path, argv, nil, 0, captureStdout ? 1 : 0, outputLimit, &out, &outLength, &err, &errLength, &status)
        }
        if rc != 0 { throw SystemError("run \(path)") }
        defer {
            free(out)
            free(err)
        }
        let stdout = out.map { Array(UnsafeBufferPointer(start: $0, count: outLength)) } ?? []
        let stderr = err.map { Array(UnsafeBufferPointer(start: $0, count: errLength)) } ?? []
        // WIFEXITED / WTERMSIG are macros; decode the status word by hand.
        let signal = status & 0x7f
        return Output(status: signal == 0 ? (status >> 8) & 0xff : 128 + signal, stdout: stdout, stderr: stderr)
    }
}
