/// Why a text is not an `IPNetwork`. `description` is a complete sentence for a message,
/// e.g. `"203.0.113.7/24" has host bits set: did you mean "203.0.113.0/24" (or "203.0.113.7/32" for one address)?`.
public struct IPNetworkParseError: Error, Sendable, Equatable, CustomStringConvertible {
    enum Reason: Sendable, Equatable {
        case notAnAddress
        case badPrefix(maximum: Int)
        case hostBitsSet(meant: IPNetwork, single: String)
    }

    /// The text that was parsed.
    public let text: String
    let reason: Reason

    init(text: String, reason: Reason) {
        self.text = text
        self.reason = reason
    }

    /// When host bits were set: the network with them cleared, which was probably meant.
    public var suggestion: IPNetwork? {
        if case .hostBitsSet(let meant, _) = reason { return meant }
        return nil
    }

    public var description: String {
        switch reason {
        case .notAnAddress:
            return "\(quoted(text)) is not an IP address or network"
        case .badPrefix(let maximum):
            return "\(quoted(text)) has a bad prefix length: use 0 to \(maximum) for \(maximum == 32 ? "IPv4" : "IPv6")"
        case .hostBitsSet(let meant, let single):
            return "\(quoted(text)) has host bits set: did you mean \(quoted(meant.description)) (or \(quoted(single)) for one address)?"
        }
    }
}
