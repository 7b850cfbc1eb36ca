/// One problem found in a policy or config file.
///
/// `description` is what `tlsgate check` prints:
/// `Policies/x.toml:7: unknown key "servr_name" (did you mean "server_name"?)`, or for a
/// warning `Policies/x.toml:7: warning: ...`. The file is the path as the caller gave it.
public struct Diagnostic: Sendable, Hashable, Codable, CustomStringConvertible {
    public enum Severity: String, Sendable, Hashable, Codable {
        case error
        case warning
    }

    public let file: String
    /// 1-based line, or nil for a problem with the whole file or folder.
    public let line: Int?
    public let message: String
    public let severity: Severity

    public init(file: String, line: Int?, message: String, severity: Severity = .error) {
        self.file = file
        self.line = line
        self.message = message
        self.severity = severity
    }

    public static func error(_ file: String, _ line: Int?, _ message: String) -> Diagnostic {
        Diagnostic(file: file, line: line, message: message, severity: .error)
    }

    public static func warning(_ file: String, _ line: Int?, _ message: String) -> Diagnostic {
        Diagnostic(file: file, line: line, message: message, severity: .warning)
    }

    public var isError: Bool { severity == .error }

    public var description: String {
        let place = line.map { "\(file):\($0)" } ?? file
        let prefix = severity == .warning ? "warning: " : ""
        return "\(place): \(prefix)\(message)"
    }
}
