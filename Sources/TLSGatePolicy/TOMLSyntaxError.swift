/// A syntax error in a TOML file: the 1-based line and what is wrong there.
///
/// Printed by the loader as `file:LINE: message`.
public struct TOMLSyntaxError: Error, Sendable, Equatable, CustomStringConvertible {
    public let line: Int
    public let message: String

    public init(line: Int, message: String) {
        self.line = line
        self.message = message
    }

    /// `LINE: message`.
    public var description: String { "\(line): \(message)" }
}
