/// The server side of a `starttls = "mysql"` connection after TLS, as a value: during
/// authentication the server numbers its packets `lead` above what the client expects (one:
/// the SSL request took sequence 1), so each is renumbered `lead` down; its OK (`0x00`) or
/// ERR (`0xff`) ends authentication, and from there bytes pass untouched.
///
/// Authentication packets are bounded (`maxPacket`) and must come in order: each after the
/// client's answer, except the OK after caching_sha2_password's fast-auth result
/// (`0x01 0x03`). Between them come auth switch requests (`0xfe`), more-data packets
/// (`0x01`) and plugin data, all renumbered alike.
///
/// caching_sha2_password's full authentication (`0x01 0x04`: the server wants the password
/// in clear over its TLS) goes to the client too, and `fullAuthenticationRequested` tells the
/// client side (`MySQLClientSide`) to be the client's RSA endpoint; the client side's
/// public-key answer changes `lead`. An auth switch to caching_sha2_password brings a new
/// scramble (`switchScramble`), which the password is masked with.
public struct MySQLServerAuth: Sendable {
    public enum Action: Equatable, Sendable {
        /// Pass these bytes to the client; `sequences`: the renumbered authentication
        /// packets' sequence numbers, in order; `ended`: authentication is over.
        case pass([UInt8], sequences: [UInt8], ended: Bool)
        case refuse(String)
    }

    public static let maxPacket = 16 * 1024
    static let fullAuthentication: [UInt8] = [0x01, 0x04]
    static let fastAuthSuccess: [UInt8] = [0x01, 0x03]
    static let cachingSHA2 = "caching_sha2_password"

    private var reader = MySQLPacketReader(maxPayload: maxPacket)
    /// The sequence number of the server's last packet (the client's response was 2).
    private var last: UInt8 = 1
    public private(set) var ended = false
    private var failed = false
    /// The last packet was the fast-auth result: the OK follows at once.
    private var okFollows = false
    /// The server asked for caching_sha2_password full authentication (at most once).
    public private(set) var fullAuthenticationRequested = false
    /// The scramble of the last auth switch to caching_sha2_password (20 bytes).
    public private(set) var switchScramble: [UInt8]?
    public private(set) var transcript: [String] = []

    public init() {}

    /// `lead`: how far the server's sequence numbers are ahead of the client's (1, or 255 =
    /// one behind once the gateway answered the client's public key request itself).
    public mutating func receive(_ bytes: [UInt8], lead: UInt8 = 1) -> Action {
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
                // Next after the client's answer (last + 2), or right after the fast-auth
                // result (last + 1: the OK follows it unasked).
                guard sequence == last &+ 2 || (okFollows && sequence == last &+ 1) else {
                    return fail("the server's authentication packet has sequence number \(sequence), out of order (after \(last))")
                }
                guard let kind = payload.first else { return fail("the server sent an empty authentication packet") }
                okFollows = payload == Self.fastAuthSuccess
                switch kind {
                case 0x00:
                    ended = true
                    transcript.append("S: OK, authentication over")
                case 0xff:
                    ended = true
                    transcript.append("S: ERR \(MySQLPacket.errText(payload))")
                case 0xfe:
                    if let why = authSwitch(payload) { return fail(why) }
                case 0x01 where payload == Self.fullAuthentication:
                    guard !fullAuthenticationRequested else {
                        return fail("the server asks for caching_sha2_password full authentication a second time")
                    }
                    fullAuthenticationRequested = true
                    transcript.append("S: caching_sha2_password full authentication requested (the gateway is the client's RSA endpoint)")
                case 0x01 where okFollows:
                    transcript.append("S: caching_sha2_password fast authentication succeeded")
                default:
                    transcript.append("S: auth data (\(payload.count) bytes)")
                }
                last = sequence
                sequences.append(sequence &- lead)
                out += MySQLPacket.frame(sequence: sequence &- lead, payload)
            }
        }
        // Whatever follows the OK or ERR in the same read is the relay's: untouched.
        out += reader.drain()
        return .pass(out, sequences: sequences, ended: true)
    }

    /// An auth switch request (`0xfe`, plugin name, NUL, plugin data): a switch to
    /// caching_sha2_password must carry a 20-byte scramble (and a NUL, as MySQL sends it),
    /// which a later full authentication's password is masked with. Nil: accepted.
    private mutating func authSwitch(_ payload: [UInt8]) -> String? {
        let body = payload.dropFirst()
        guard let end = body.firstIndex(of: 0) else {
            transcript.append("S: auth switch request")
            return nil
        }
        let plugin = String(decoding: body[..<end], as: UTF8.self)
        transcript.append("S: auth switch request (\(UpgradeText.printable(body[..<end], max: 64)))")
        guard plugin == Self.cachingSHA2 else { return nil }
        var data = body[(end + 1)...]
        if data.count == 21, data.last == 0 { data = data.dropLast() }
        guard data.count == 20 else {
            return "the server's auth switch to caching_sha2_password carries \(data.count) bytes of scramble, not 20"
        }
        switchScramble = Array(data)
        return nil
    }

    private mutating func fail(_ why: String) -> Action {
        failed = true
        return .refuse(why)
    }
}
