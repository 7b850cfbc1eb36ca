import Foundation

/// Runs the `ip` tool for TPROXY's policy routing.
public enum IPRoute {
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    public static func run(_ arguments: [String]) throws {
        let process = Process()
        let path = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"].first {
            FileManager.default.isExecutableFile(atPath: $0)
        } ?? "/sbin/ip"
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        let stderr = Pipe()
        process.standardError = stderr
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        let err = stderr.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw Failure(description: "ip \(arguments.joined(separator: " ")): \(String(decoding: err, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))")
        }
    }
}
