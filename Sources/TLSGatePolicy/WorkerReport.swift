/// What a worker may tell the supervisor on its control channel, the other direction of
/// `WorkerAssignment`. In the manner of OpenSSH's monitor, the supervisor accepts only this
/// allow-list, one short line at a time, and treats anything else as a broken worker:
///
///     ready\n              set up on its socket, waiting for `accept` to accept from it
///     failed REASON\n      it cannot start (REASON: printable ASCII, at most 200 bytes)
///     draining\n           after SIGTERM: it has stopped accepting (its successor may start)
///     stats K=V K=V...\n   running totals of its connections (`WorkerStats`: a fixed key
///                          set, decimal values, each key once, at most 32 pairs)
///
/// The supervisor sends one message the other way: `accept\n` (`acceptLine`), after which
/// the worker accepts. Two workers never accept from the same socket at once.
///
/// A line is at most `maximumLength` bytes, newline included.
public enum WorkerReport: Sendable, Equatable {
    case ready
    case failed(String)
    case draining
    /// Running totals since the worker started, by `WorkerStats` key.
    case stats([String: UInt64])

    /// What the supervisor sends to let a ready worker accept.
    public static let acceptLine: [UInt8] = Array("accept\n".utf8)

    public static let maximumLength = 256
    public static let maximumReasonLength = 200

    /// The bytes to write, newline included; a reason is cut to printable ASCII.
    public var line: [UInt8] {
        switch self {
        case .ready:
            return Array("ready\n".utf8)
        case .draining:
            return Array("draining\n".utf8)
        case .failed(let reason):
            let clean = reason.utf8.map { (0x20...0x7e).contains($0) ? $0 : UInt8(ascii: "?") }
            return Array("failed ".utf8) + clean.prefix(Self.maximumReasonLength) + [0x0a]
        case .stats(let values):
            let pairs = values.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
            return Array((["stats"] + pairs).joined(separator: " ").utf8) + [0x0a]
        }
    }

    public enum Parsed: Sendable, Equatable {
        /// A report and how many bytes of the buffer it took.
        case report(WorkerReport, consumed: Int)
        /// No complete line yet (and not too long to become one).
        case incomplete
        /// Not an allowed message: the worker is broken or compromised.
        case invalid(String)
    }

    /// The first report in `bytes`.
    public static func parse(_ bytes: [UInt8]) -> Parsed {
        guard let newline = bytes.prefix(maximumLength).firstIndex(of: 0x0a) else {
            return bytes.count >= maximumLength ? .invalid("a line longer than \(maximumLength) bytes") : .incomplete
        }
        let body = bytes[bytes.startIndex..<newline]
        let consumed = newline - bytes.startIndex + 1
        guard body.allSatisfy({ (0x20...0x7e).contains($0) }) else { return .invalid("a line with control or non-ASCII bytes") }
        let text = String(decoding: body, as: UTF8.self)
        if text == "ready" { return .report(.ready, consumed: consumed) }
        if text == "draining" { return .report(.draining, consumed: consumed) }
        if text.hasPrefix("failed ") {
            let reason = String(text.dropFirst(7))
            guard !reason.isEmpty, reason.utf8.count <= maximumReasonLength else {
                return .invalid("a failure report without a reason or with one over \(maximumReasonLength) bytes")
            }
            return .report(.failed(reason), consumed: consumed)
        }
        if text.hasPrefix("stats ") {
            switch WorkerStats.parse(text.dropFirst(6)) {
            case .success(let values): return .report(.stats(values), consumed: consumed)
            case .failure(let why): return .invalid(why.reason)
            }
        }
        return .invalid("an unknown message")
    }
}
