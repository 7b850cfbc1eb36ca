/// The server side of a `starttls = "mysql"` connection after TLS, as a value: during
/// authentication the server numbers its packets one above what the client expects (the SSL
/// request took sequence 1), so each is renumbered one down; its OK (`0x00`) or ERR (`0xff`)
/// ends authentication, and from there bytes pass untouched.
///
/// Authentication packets are bounded (`maxPacket`) and must come in order. Between them
/// come auth switch requests (`0xfe`), more-data packets (`0x01`: caching_sha2_password's
/// fast-auth result, its public key) and plugin data, all renumbered alike.
///
/// caching_sha2_password's full authentication (`0x01 0x04`) is refused: the server, on
/// TLS, wants the password in clear, and the client, which sees a plain connection, would
/// send an RSA request or blob in its place (which the server reads as a wrong password).
public struct MySQLServerAuth: Sendable {
    public enum Action: Equatable, Sendable {
        /// Pass these bytes to the client; `sequences`: the renumbered authentication
        /// packets' sequence numbers, in order; `ended`: authentication is over.
        case pass([UInt8], sequences: [UInt8], ended: Bool)
        case refuse(String)
    }

    public static let maxPacket = 16 * 1024
    static let fullAuthentication: [UInt8] = [0x01, 0x04]

    private var reader = MySQLPacketReader(maxPayload: maxPacket)
    /// The sequence number of the server's last packet (the client's response was 2).
    private var last: UInt8 = 1
    public private(set) var ended = false
    private var failed = false
    public private(set) var transcript: [String] = []

    public init() {}

    public mutating func receive(_ bytes: [UInt8]) -> Action {
        if failed { return .pass([], sequences: [], ended: false) }
        if ended { return .pass(bytes, sequences: [], ended: true) }
        reader.append(bytes)
        var out: [UInt8] = []
        var sequences: [UInt8] = []
        while !ended {
            switch reader.next() {
            case .needMore:
                return .pass(out, sequences: sequences, ended: false)
            case .oversized(let length):
                return fail("the server's authentication packet is larger than \(Self.maxPacket) bytes (\(length))")
            case .packet(let sequence, let payload):
                // Next after the client's answer (last + 2), or right after its own last packet
                // (last + 1: caching_sha2_password's fast-auth result is followed by the OK).
                let first = last == 1
                guard sequence == last &+ 2 || (!first && sequence == last &+ 1) else {
                    return fail("the server's authentication packet has sequence number \(sequence), out of order (after \(last))")
                }
                guard let kind = payload.first else { return fail("the server sent an empty authentication packet") }
                if payload == Self.fullAuthentication {
                    transcript.append("S: caching_sha2_password full authentication requested")
                    return fail(
                        "the server asks for caching_sha2_password full authentication (the password in clear over its TLS), which a client on the plain LAN side does not send; log in once directly over TLS so the server caches the account, or use another auth plugin")
                }
                switch kind {
                case 0x00:
                    ended = true
                    transcript.append("S: OK, authentication over")
                case 0xff:
                    ended = true
                    transcript.append("S: ERR \(MySQLPacket.errText(payload))")
                case 0xfe:
                    transcript.append("S: auth switch request")
                default:
                    transcript.append("S: auth data (\(payload.count) bytes)")
                }
                last = sequence
                sequences.append(sequence &- 1)
                out += MySQLPacket.frame(sequence: sequence &- 1, payload)
            }
        }
        // Whatever follows the OK or ERR in the same read is the relay's: untouched.
        out += reader.drain()
        return .pass(out, sequences: sequences, ended: true)
    }

    private mutating func fail(_ why: String) -> Action {
        failed = true
        return .refuse(why)
    }
}
