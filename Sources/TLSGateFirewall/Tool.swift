import Foundation

/// Runs one of the system tools the gateway drives (`nft`, `conntrack`, `ip`): the one place
/// that finds it, starts it, feeds its standard input and collects what it says.
public enum Tool {
    /// The first of `candidates` that is an executable file, if any.
    public static func find(_ candidates: [String]) -> String? {
        candidates.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// What a finished run said: its exit status, standard output (empty unless asked
    /// for) and standard error.
    public struct Result: Sendable {
        public var status: Int32
        public var stdout: String
        public var stderr: String

        /// Standard error without surrounding white space, for a message.
        public var message: String { stderr.trimmingCharacters(in: .whitespacesAndNewlines) }
    }

    /// Runs `path` with `arguments`, `input` on its standard input, and waits for it.
    /// Throws only when it cannot be started; a non-zero status is the caller's to judge.
    public static func run(_ path: String, _ arguments: [String], input: String? = nil, captureStdout: Bool = false) throws
        -> Result
    {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        let stdin = Pipe()
        let stdout = Pipe()
        let stderr = Pipe()
        process.standardInput = input == nil ? FileHandle.nullDevice : stdin
        process.standardOutput = captureStdout ? stdout : FileHandle.nullDevice
        process.standardError = stderr
        try process.run()
        if let input {
            stdin.fileHandleForWriting.write(Data(input.utf8))
            try? stdin.fileHandleForWriting.close()
        }
        let out = captureStdout ? stdout.fileHandleForReading.readDataToEndOfFile() : Data()
        let err = stderr.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Result(
            status: process.terminationStatus, stdout: String(decoding: out, as: UTF8.self),
            stderr: String(decoding: err, as: UTF8.self))
    }
}
