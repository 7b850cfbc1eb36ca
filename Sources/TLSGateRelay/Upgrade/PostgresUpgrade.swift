/// PostgreSQL (protocol 3, "SSL Session Encryption"): send `SSLRequest`, require the single
/// byte `S`, then the TLS handshake; the client's startup message follows inside TLS.
///
/// `N` (the server does not do TLS), an `ErrorResponse` or anything else is a refusal; so is
/// any byte after the `S` (it would be taken as TLS input: CVE-2021-23222's shape).
public struct PostgresUpgrade: UpgradeStateMachine {
    enum State: Equatable { case start, waiting, done, failed }

    /// Int32 length 8, Int32 80877103.
    public static let sslRequest: [UInt8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]
    /// Int32 length 8, Int32 80877104.
    public static let gssEncRequest: [UInt8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30]

    private(set) var state = State.start
    public private(set) var transcript: [String] = []

    public init() {}

    public mutating func start() -> UpgradeAction {
        guard state == .start else { return .refuse("already started") }
        state = .waiting
        transcript.append("C: SSLRequest")
        return .send(Self.sslRequest)
    }

    public mutating func receive(_ bytes: [UInt8]) -> UpgradeAction {
        switch state {
        case .done: return fail("the server sent data after its SSLRequest answer, before the TLS handshake")
        case .failed: return .refuse("the exchange already failed")
        case .start, .waiting: break
        }
        guard let first = bytes.first else { return .needMore }
        switch first {
        case UInt8(ascii: "S"):
            transcript.append("S: S (TLS accepted)")
            guard bytes.count == 1 else {
                return fail("the server sent more than its answer, unasked (\(bytes.count - 1) bytes), before TLS")
            }
            state = .done
            return .startTLS
        case UInt8(ascii: "N"):
            transcript.append("S: N")
            return fail("the server does not accept TLS (it answered SSLRequest with N)")
        case UInt8(ascii: "E"):
            transcript.append("S: ErrorResponse")
            return fail("the server answered SSLRequest with an error: \"\(UpgradeText.printable(bytes.dropFirst(5).filter { $0 != 0 }))\"")
        default:
            return fail("the server's answer to SSLRequest is not S or N (0x\(String(first, radix: 16)))")
        }
    }

    /// An ErrorResponse (FATAL, SQLSTATE 08006 connection_failure) for the client.
    public static func errorResponse(_ text: String) -> [UInt8] {
        var body: [UInt8] = []
        for (code, value) in [("S", "FATAL"), ("V", "FATAL"), ("C", "08006"), ("M", text)] {
            body.append(UInt8(ascii: Unicode.Scalar(code)!))
            body += Array(value.utf8) + [0]
        }
        body.append(0)
        let length = UInt32(body.count + 4)
        return [UInt8(ascii: "E"), UInt8(length >> 24), UInt8(length >> 16 & 0xff), UInt8(length >> 8 & 0xff), UInt8(length & 0xff)] + body
    }

    private mutating func fail(_ why: String) -> UpgradeAction {
        state = .failed
        return .refuse(why)
    }
}

/// The LAN side of a PostgreSQL connection before the relay: a client's `SSLRequest` or
/// `GSSENCRequest` is answered `N` by the gateway (the client then goes on in plain text,
/// as `sslmode=disable` or `prefer` do; TLS is the gateway's job on the other side), at most
/// `maxRequests` times; the first other bytes (the startup message, or a CancelRequest) are
/// passed on, to be held until the server is verified.
public struct PostgresClientPreamble: Sendable {
    public enum Action: Equatable, Sendable {
        /// Write this to the client, then read more.
        case answer([UInt8])
        case needMore
        /// Done: pass these bytes on (they are the client's; nothing was dropped but requests).
        case pass([UInt8])
    }

    public static let maxRequests = 2
    private var buffer: [UInt8] = []
    private var answered = 0
    public private(set) var done = false

    public init() {}

    public mutating func receive(_ bytes: [UInt8]) -> Action {
        guard !done else { return .pass(bytes) }
        buffer += bytes
        guard buffer.count >= 8 else { return .needMore }
        let head = Array(buffer.prefix(8))
        if answered < Self.maxRequests, head == PostgresUpgrade.sslRequest || head == PostgresUpgrade.gssEncRequest {
            answered += 1
            buffer.removeFirst(8)
            // A client waits for the answer before sending more; bytes already here are unasked.
            guard buffer.isEmpty else { return finish() }
            return .answer([UInt8(ascii: "N")])
        }
        return finish()
    }

    private mutating func finish() -> Action {
        done = true
        let out = buffer
        buffer = []
        return .pass(out)
    }
}
