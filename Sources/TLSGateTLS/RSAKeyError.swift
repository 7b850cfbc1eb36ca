/// An `RSAKey` operation failed: what was done, and OpenSSL's reason strings (never key
/// material or the data).
public struct RSAKeyError: Error, Sendable, CustomStringConvertible {
    public let context: String
    /// OpenSSL's error queue at the time of failure, oldest first.
    public let reasons: [String]

    public init(context: String, reasons: [String] = []) {
        self.context = context
        self.reasons = reasons
    }

    public var description: String {
        reasons.isEmpty ? context : "\(context): \(reasons.joined(separator: "; "))"
    }
}
