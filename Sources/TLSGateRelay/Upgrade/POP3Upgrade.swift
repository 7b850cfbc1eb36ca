/// POP3 STLS (RFC 2595 §4): read `+OK`, `STLS`, read `+OK`, then the TLS handshake.
///
/// Single-line answers of at most `maxLine` bytes (RFC 1939 allows 512); nothing unasked
/// after an answer.
public struct POP3Upgrade: UpgradeStateMachine {
    enum State: Equatable { case greeting, stls, done, failed }

    public static let maxLine = 1024

    private(set) var state = State.greeting
    private var lines = LineAssembler(maxLine: maxLine)
    public private(set) var transcript: [String] = []

    public init() {}

    public mutating func start() -> UpgradeAction { .needMore }

    public mutating func receive(_ bytes: [UInt8]) -> UpgradeAction {
        switch state {
        case .done: return fail("the server sent data after its STLS answer, before the TLS handshake")
        case .failed: return .refuse("the exchange already failed")
        default: break
        }
        lines.append(bytes)
        switch lines.next() {
        case .none:
            return .needMore
        case .tooLong:
            return fail("the server sent a line longer than \(Self.maxLine) bytes")
        case .line(let line):
            let text = UpgradeText.printable(line)
            transcript.append("S: \(text)")
            guard lines.pending == 0 else {
                return fail("the server sent more than its answer, unasked (\(lines.pending) bytes), before TLS")
            }
            let ok = line.hasPrefixIgnoringCase("+OK") && (line.count == 3 || line[3] == 0x20)
            let err = line.hasPrefixIgnoringCase("-ERR") && (line.count == 4 || line[4] == 0x20)
            switch state {
            case .greeting:
                if ok {
                    state = .stls
                    transcript.append("C: STLS")
                    return .send(Array("STLS\r\n".utf8))
                }
                return fail(err ? "the server refused the connection: \"\(text)\"" : "the server's greeting is not \"+OK\": \"\(text)\"")
            case .stls:
                if ok {
                    state = .done
                    return .startTLS
                }
                return fail(err ? "the server does not offer STLS: \"\(text)\"" : "the server's answer to STLS is not \"+OK\": \"\(text)\"")
            case .done, .failed:
                return fail("unexpected line \"\(text)\"")
            }
        }
    }

    private mutating func fail(_ why: String) -> UpgradeAction {
        state = .failed
        return .refuse(why)
    }
}
