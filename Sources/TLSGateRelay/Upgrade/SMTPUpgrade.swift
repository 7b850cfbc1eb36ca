/// SMTP STARTTLS (RFC 3207, RFC 5321): read the 220 greeting, `EHLO`, require `STARTTLS`
/// in the 250 reply, `STARTTLS`, read 220, then the TLS handshake.
///
/// Strict: a reply line must be three digits then space, dash or the end; every line of a
/// multi-line reply carries the same code; a line is at most `maxLine` bytes and a reply at
/// most `maxReplyBytes` / `maxReplyLines`. Bytes the server sends after a complete reply,
/// before being asked, are a refusal (nothing unasked may precede TLS).
public struct SMTPUpgrade: UpgradeStateMachine {
    enum State: Equatable { case greeting, ehlo, starttls, done, failed }

    public static let maxLine = 1024
    public static let maxReplyBytes = 16 * 1024
    public static let maxReplyLines = 64

    private(set) var state = State.greeting
    private let ehloName: String
    private var lines = LineAssembler(maxLine: maxLine)
    private var replyCode: [UInt8]?
    private var replyLines: [[UInt8]] = []
    private var replyBytes = 0
    public private(set) var transcript: [String] = []

    /// - Parameter ehloName: the gateway's name in `EHLO` (a domain, or an address literal
    ///   such as `[198.19.0.1]`).
    public init(ehloName: String) {
        self.ehloName = ehloName
    }

    public mutating func start() -> UpgradeAction { .needMore }

    public mutating func receive(_ bytes: [UInt8]) -> UpgradeAction {
        switch state {
        case .done: return fail("the server sent data after its STARTTLS answer, before the TLS handshake")
        case .failed: return .refuse("the exchange already failed")
        default: break
        }
        replyBytes += bytes.count
        guard replyBytes <= Self.maxReplyBytes else {
            return fail("the server's reply is larger than \(Self.maxReplyBytes) bytes")
        }
        lines.append(bytes)
        while true {
            switch lines.next() {
            case .none:
                return .needMore
            case .tooLong:
                return fail("the server sent a reply line longer than \(Self.maxLine) bytes")
            case .line(let line):
                guard line.count >= 3, line[0..<3].allSatisfy({ (0x30...0x39).contains($0) }),
                    line.count == 3 || line[3] == 0x20 || line[3] == 0x2d
                else {
                    return fail("the server's reply line is not an SMTP reply: \"\(UpgradeText.printable(line))\"")
                }
                let code = Array(line[0..<3])
                if let replyCode, replyCode != code {
                    return fail("the server's multi-line reply changes its code: \"\(UpgradeText.printable(line))\"")
                }
                replyCode = code
                replyLines.append(line)
                guard replyLines.count <= Self.maxReplyLines else {
                    return fail("the server's reply has more than \(Self.maxReplyLines) lines")
                }
                let last = line.count == 3 || line[3] == 0x20
                guard last else { continue }
                guard lines.pending == 0 else {
                    return fail("the server sent more than its reply, unasked (\(lines.pending) bytes), before TLS")
                }
                return replyComplete(code: Int(String(decoding: code, as: UTF8.self)) ?? 0)
            }
        }
    }

    private mutating func replyComplete(code: Int) -> UpgradeAction {
        let reply = replyLines
        let first = UpgradeText.printable(reply.first ?? [])
        transcript.append("S: \(first)\(reply.count > 1 ? " (+\(reply.count - 1) lines)" : "")")
        replyLines = []
        replyCode = nil
        replyBytes = 0
        switch state {
        case .greeting:
            guard code == 220 else { return fail("the server's greeting is not 220: \"\(first)\"") }
            state = .ehlo
            return send("EHLO \(ehloName)")
        case .ehlo:
            guard code == 250 else { return fail("the server refused EHLO: \"\(first)\"") }
            // Keywords start after "250-" / "250 " on every line but the first (the domain).
            let offersStartTLS = reply.dropFirst().contains { line in
                let keyword = line.dropFirst(4).prefix { $0 != 0x20 }
                return Array(keyword).hasPrefixIgnoringCase("STARTTLS") && keyword.count == 8
            }
            guard offersStartTLS else { return fail("the server does not offer STARTTLS in its EHLO reply") }
            state = .starttls
            return send("STARTTLS")
        case .starttls:
            guard code == 220 else { return fail("the server refused STARTTLS: \"\(first)\"") }
            state = .done
            return .startTLS
        case .done, .failed:
            return fail("unexpected reply \"\(first)\"")
        }
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
