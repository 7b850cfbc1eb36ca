/// What the supervisor may tell a running worker on its control channel (after the
/// assignment line), the direction opposite to `WorkerReport`. The worker accepts only
/// these lines and ignores (and logs) anything else:
///
///     accept\n                      start accepting from the socket
///     destinations NET NET ...\n    the policy's destination networks from now on (its
///                                   `networks` and the current addresses of its `hosts`),
///                                   replacing those of the assignment; at most
///                                   `maximumNetworks`, each `IPNetwork` text
///
/// A line is at most `maximumLength` bytes, newline included, printable ASCII.
public enum SupervisorMessage: Sendable, Equatable {
    case accept
    case destinations([IPNetwork])

    public static let maximumLength = 256 * 1024
    public static let maximumNetworks = 4096

    public var line: [UInt8] {
        switch self {
        case .accept:
            return Array("accept\n".utf8)
        case .destinations(let networks):
            return Array((["destinations"] + networks.map(\.description)).joined(separator: " ").utf8) + [0x0a]
        }
    }

    public enum Parsed: Sendable, Equatable {
        case message(SupervisorMessage, consumed: Int)
        case incomplete
        /// Not an allowed line; `consumed` bytes (the line) are to be dropped.
        case invalid(String, consumed: Int)
    }

    /// The first message in `bytes`.
    public static func parse(_ bytes: [UInt8]) -> Parsed {
        guard let newline = bytes.prefix(maximumLength).firstIndex(of: 0x0a) else {
            return bytes.count >= maximumLength
                ? .invalid("a line longer than \(maximumLength) bytes", consumed: bytes.count) : .incomplete
        }
        let consumed = newline - bytes.startIndex + 1
        let body = bytes[bytes.startIndex..<newline]
        guard body.allSatisfy({ (0x20...0x7e).contains($0) }) else {
            return .invalid("a line with control or non-ASCII bytes", consumed: consumed)
        }
        let words = body.split(separator: 0x20, omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) }
        switch words.first {
        case "accept" where words.count == 1:
            return .message(.accept, consumed: consumed)
        case "destinations":
            let items = words.dropFirst()
            guard items.count <= maximumNetworks else {
                return .invalid("more than \(maximumNetworks) destinations", consumed: consumed)
            }
            var networks: [IPNetwork] = []
            for item in items {
                guard let network = IPNetwork(item), network.description == item else {
                    return .invalid("destination \"\(item.prefix(60))\" is not a network in canonical form", consumed: consumed)
                }
                networks.append(network)
            }
            return .message(.destinations(networks), consumed: consumed)
        default:
            return .invalid("an unknown message", consumed: consumed)
        }
    }
}
