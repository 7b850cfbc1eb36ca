/// LDAP StartTLS (RFC 4511 §4.14, RFC 4513 §3): the client speaks first, so the gateway
/// sends the StartTLS extended request (1.3.6.1.4.1.1466.20037) at once, under a message ID
/// no client uses before it (`messageID`, and it is answered before any client byte is
/// relayed), requires an ExtendedResponse with resultCode 0, then the TLS handshake. The
/// client's held bytes follow inside TLS.
///
/// Strict BER: one LDAPMessage SEQUENCE of at most `maxMessage` bytes, definite lengths, the
/// right message ID, nothing after it. A Notice of Disconnection (message ID 0) is a refusal.
public struct LDAPUpgrade: UpgradeStateMachine {
    enum State: Equatable { case start, waiting, done, failed }

    public static let maxMessage = 16 * 1024
    /// The largest message ID (2^31 - 1): clients count up from 1.
    public static let messageID: Int = 0x7fff_ffff
    static let startTLSOID = Array("1.3.6.1.4.1.1466.20037".utf8)
    static let noticeOfDisconnectionOID = Array("1.3.6.1.4.1.1466.20036".utf8)

    private(set) var state = State.start
    private var buffer: [UInt8] = []
    public private(set) var transcript: [String] = []

    public init() {}

    /// The StartTLS extended request, BER-encoded.
    static var request: [UInt8] {
        let id = BER.encode(0x02, [0x7f, 0xff, 0xff, 0xff])
        let extended = BER.encode(0x77, BER.encode(0x80, startTLSOID))  // [APPLICATION 23] { [0] requestName }
        return BER.encode(0x30, id + extended)
    }

    public mutating func start() -> UpgradeAction {
        guard state == .start else { return .refuse("already started") }
        state = .waiting
        transcript.append("C: ExtendedRequest StartTLS (1.3.6.1.4.1.1466.20037), messageID \(Self.messageID)")
        return .send(Self.request)
    }

    public mutating func receive(_ bytes: [UInt8]) -> UpgradeAction {
        switch state {
        case .start, .waiting: break
        case .done: return fail("the server sent data after its StartTLS answer, before the TLS handshake")
        case .failed: return .refuse("the exchange already failed")
        }
        buffer.append(contentsOf: bytes)
        guard buffer.count <= Self.maxMessage + 8 else {
            return fail("the server's answer is larger than \(Self.maxMessage) bytes")
        }
        do {
            let message = try BER.read(buffer, at: 0, limit: Self.maxMessage)
            guard message.tag == 0x30 else { return fail("the server's answer is not an LDAPMessage (tag 0x\(String(message.tag, radix: 16)))") }
            guard message.end == buffer.count else {
                return fail("the server sent more than its answer, unasked (\(buffer.count - message.end) bytes), before TLS")
            }
            do {
                return try answer(Array(message.value))
            } catch BER.ReadError.incomplete {
                // Inside a whole message, a short element is not "wait": it lies about its length.
                return fail("the server's answer is malformed BER: an element runs past the end of its message")
            }
        } catch BER.ReadError.incomplete {
            return .needMore
        } catch BER.ReadError.malformed(let what) {
            return fail("the server's answer is malformed BER: \(what)")
        } catch {
            return fail("the server's answer is malformed: \(error)")
        }
    }

    private mutating func answer(_ body: [UInt8]) throws -> UpgradeAction {
        let id = try BER.read(body, at: 0, limit: 8)
        guard id.tag == 0x02 else { return fail("the server's answer has no messageID") }
        let messageID = try BER.integer(id.value)
        let op = try BER.read(body, at: id.end, limit: Self.maxMessage)
        guard op.tag == 0x78 else {
            return fail("the server's answer is not an ExtendedResponse (tag 0x\(String(op.tag, radix: 16)))")
        }
        let fields = Array(op.value)
        let code = try BER.read(fields, at: 0, limit: 8)
        guard code.tag == 0x0a else { return fail("the server's ExtendedResponse has no resultCode") }
        let resultCode = try BER.integer(code.value)
        let matched = try BER.read(fields, at: code.end, limit: Self.maxMessage)
        let diagnostic = try BER.read(fields, at: matched.end, limit: Self.maxMessage)
        guard matched.tag == 0x04, diagnostic.tag == 0x04 else { return fail("the server's ExtendedResponse is malformed") }
        // The optional rest (referral, responseName, responseValue) must be well-formed too.
        var offset = diagnostic.end
        var responseName: ArraySlice<UInt8>?
        while offset < fields.count {
            let element = try BER.read(fields, at: offset, limit: Self.maxMessage)
            if element.tag == 0x8a { responseName = element.value }
            offset = element.end
        }
        let diag = UpgradeText.printable(diagnostic.value)
        transcript.append("S: ExtendedResponse messageID \(messageID), resultCode \(resultCode)\(diag.isEmpty ? "" : " \"\(diag)\"")")
        if messageID == 0 {
            let notice = responseName.map { Array($0) == Self.noticeOfDisconnectionOID } ?? false
            return fail("the server sent \(notice ? "a notice of disconnection" : "an unsolicited notification"): resultCode \(resultCode)\(diag.isEmpty ? "" : " \"\(diag)\"")")
        }
        guard messageID == Self.messageID else {
            return fail("the server answered message ID \(messageID), not \(Self.messageID)")
        }
        guard resultCode == 0 else {
            return fail("the server refused StartTLS: resultCode \(resultCode) (\(Self.resultName(resultCode)))\(diag.isEmpty ? "" : " \"\(diag)\"")")
        }
        state = .done
        return .startTLS
    }

    static func resultName(_ code: Int) -> String {
        switch code {
        case 1: return "operationsError"
        case 2: return "protocolError"
        case 8: return "strongerAuthRequired"
        case 51: return "busy"
        case 52: return "unavailable"
        case 53: return "unwillingToPerform"
        default: return "code \(code)"
        }
    }

    /// A Notice of Disconnection (RFC 4511 §4.4.1) for the client: unavailable (52) with
    /// `text` as diagnosticMessage.
    public static func noticeOfDisconnection(_ text: String) -> [UInt8] {
        let fields = BER.encode(0x0a, [52]) + BER.encode(0x04, []) + BER.encode(0x04, Array(text.utf8))
            + BER.encode(0x8a, noticeOfDisconnectionOID)
        return BER.encode(0x30, BER.encode(0x02, [0]) + BER.encode(0x78, fields))
    }

    private mutating func fail(_ why: String) -> UpgradeAction {
        state = .failed
        return .refuse(why)
    }
}
