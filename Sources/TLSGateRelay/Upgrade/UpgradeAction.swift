/// What an upgrade state machine asks its handler to do next.
public enum UpgradeAction: Equatable, Sendable {
    /// Write these bytes to the server, then wait for its answer.
    case send([UInt8])
    /// Wait for more bytes from the server.
    case needMore
    /// The plain-text exchange is over and nothing is left unread: start the TLS handshake now.
    case startTLS
    /// The server cannot be upgraded (or misbehaved): why, in words for the log and the client.
    case refuse(String)
    /// MySQL: give the client this greeting (made by the gateway), then wait for the client's
    /// answer, handed to the machine's `clientAnswered`.
    case greetClient([UInt8])
    /// Write these bytes to the server, then start the TLS handshake at once (no answer comes).
    case sendThenStartTLS([UInt8])
}

/// One protocol's plain-text upgrade, as a value: fed the server's bytes, it answers with
/// the next action. No I/O, no NIO: tested byte by byte and all at once.
public protocol UpgradeStateMachine: Sendable {
    /// The first action once the TCP connection is up (a server-speaks-first protocol waits).
    mutating func start() -> UpgradeAction
    /// Bytes from the server; any amount, split anywhere.
    mutating func receive(_ bytes: [UInt8]) -> UpgradeAction
    /// The exchange so far, one line per step ("S: 220 …", "C: EHLO …"), for `probe`.
    var transcript: [String] { get }
    /// The client's first message, for protocols where the client answers a greeting
    /// before TLS (`greetClient`).
    mutating func clientAnswered(_ bytes: [UInt8]) -> UpgradeAction
}

extension UpgradeStateMachine {
    public mutating func clientAnswered(_ bytes: [UInt8]) -> UpgradeAction {
        .refuse("the client has no part in this protocol's upgrade")
    }
}

/// Text shown to people (logs, refusals, probe): printable ASCII only, bounded.
enum UpgradeText {
    static func printable<Bytes: Collection>(_ bytes: Bytes, max: Int = 160) -> String where Bytes.Element == UInt8 {
        var out = ""
        for byte in bytes.prefix(max) {
            out.append((0x20...0x7e).contains(byte) ? Character(Unicode.Scalar(byte)) : "?")
        }
        if bytes.count > max { out += "…" }
        return out
    }

    static func printable(_ text: String, max: Int = 300) -> String {
        printable(Array(text.utf8), max: max)
    }
}
