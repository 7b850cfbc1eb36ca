/// IMAP STARTTLS (RFC 3501 §6.2.1, RFC 2595): read `* OK` (a `* PREAUTH` greeting is
/// already past authentication and cannot be upgraded: refused), `T1 CAPABILITY`, require
/// `STARTTLS`, `T2 STARTTLS`, read `T2 OK`, then the TLS handshake.
///
/// Strict and bounded like `SMTPUpgrade`: lines of at most `maxLine` bytes, at most
/// `maxUntagged` untagged lines and `maxReplyBytes` per step, nothing unasked after a
/// tagged answer.
public struct IMAPUpgrade: UpgradeStateMachine {
    enum State: Equatable { case greeting, capability, starttls, done, failed }

    public static let maxLine = 8 * 1024
    public static let maxReplyBytes = 32 * 1024
    public static let maxUntagged = 64

    private(set) var state = State.greeting
    private var lines = LineAssembler(maxLine: maxLine)
    private var replyBytes = 0
    private var untagged = 0
    private var offersStartTLS = false
    public private(set) var transcript: [String] = []

    public init() {}

    public mutating func start() -> UpgradeAction { .needMore }

    public mutating func receive(_ bytes: [UInt8]) -> UpgradeAction {
        switch state {
        case .done: return fail("the server sent data after its STARTTLS answer, before the TLS handshake")
        case .failed: return .refuse("the exchange already failed")
        default: break
        }
        replyBytes += bytes.count
        guard replyBytes <= Self.maxReplyBytes else {
            return fail("the server's answer is larger than \(Self.maxReplyBytes) bytes")
        }
        lines.append(bytes)
        while true {
            switch lines.next() {
            case .none:
                return .needMore
            case .tooLong:
                return fail("the server sent a line longer than \(Self.maxLine) bytes")
            case .line(let line):
                if let action = handle(line) {
                    if case .refuse = action { return action }
                    guard lines.pending == 0 else {
                        return fail("the server sent more than its answer, unasked (\(lines.pending) bytes), before TLS")
                    }
                    return action
                }
            }
        }
    }

    /// One line; nil: the answer goes on.
    private mutating func handle(_ line: [UInt8]) -> UpgradeAction? {
        let text = UpgradeText.printable(line)
        switch state {
        case .greeting:
            transcript.append("S: \(text)")
            if Self.isStatus(line, tag: "*", "OK") {
                state = .capability
                return begin()
            }
            if Self.isStatus(line, tag: "*", "PREAUTH") {
                return fail("the server's greeting is PREAUTH (already authenticated): it cannot be upgraded to TLS")
            }
            if Self.isStatus(line, tag: "*", "BYE") { return fail("the server said BYE: \"\(text)\"") }
            return fail("the server's greeting is not \"* OK\": \"\(text)\"")
        case .capability, .starttls:
            let tag = state == .capability ? "T1" : "T2"
            if line.hasPrefixIgnoringCase("* ") {
                untagged += 1
                guard untagged <= Self.maxUntagged else {
                    return fail("the server sent more than \(Self.maxUntagged) untagged lines")
                }
                if state == .capability, line.hasPrefixIgnoringCase("* CAPABILITY ") {
                    transcript.append("S: \(text)")
                    let atoms = line.split(separator: 0x20).dropFirst(2)
                    if atoms.contains(where: { Array($0).hasPrefixIgnoringCase("STARTTLS") && $0.count == 8 }) {
                        offersStartTLS = true
                    }
                }
                return nil
            }
            guard line.hasPrefixIgnoringCase(tag + " ") else {
                return fail("the server's answer is not an IMAP response to \(tag): \"\(text)\"")
            }
            transcript.append("S: \(text)")
            guard Self.isStatus(line, tag: tag, "OK") else {
                let command = state == .capability ? "CAPABILITY" : "STARTTLS"
                return fail("the server refused \(command): \"\(text)\"")
            }
            if state == .capability {
                guard offersStartTLS else { return fail("the server does not offer STARTTLS in its CAPABILITY") }
                state = .starttls
                untagged = 0
                replyBytes = 0
                return send("T2 STARTTLS")
            }
            state = .done
            return .startTLS
        case .done, .failed:
            return fail("unexpected line \"\(text)\"")
        }
    }

    private mutating func begin() -> UpgradeAction {
        replyBytes = 0
        return send("T1 CAPABILITY")
    }

    /// "TAG STATUS" then a space or the end, the status without case.
    static func isStatus(_ line: [UInt8], tag: String, _ status: String) -> Bool {
        let prefix = tag + " " + status
        guard line.hasPrefixIgnoringCase(prefix) else { return false }
        return line.count == prefix.utf8.count || line[prefix.utf8.count] == 0x20
    }

    private mutating func send(_ command: String) -> UpgradeAction {
        transcript.append("C: \(command)")
        return .send(Array((command + "\r\n").utf8))
    }

    private mutating func fail(_ why: String) -> UpgradeAction {
        state = .failed
        return .refuse(why)
    }
}
