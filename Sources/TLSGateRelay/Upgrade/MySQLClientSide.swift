/// The LAN side of a `starttls = "mysql"` connection, as a value: the client's handshake
/// response (checked, and held for the server renumbered to sequence 2), then its packets
/// during authentication renumbered one up, then nothing (the relay passes bytes untouched).
///
/// A client that sets CLIENT_SSL (an SSL request: it asks the gateway for TLS) is answered
/// with an ERR packet: the LAN side is plain by design.
public struct MySQLClientSide: Sendable {
    public enum Action: Equatable, Sendable {
        case needMore
        /// The client's handshake response: `sslRequest` goes to the machine's
        /// `clientAnswered`; `held` (the response as sequence 2, and anything after it
        /// renumbered) goes to the server once it is verified.
        case answered(response: [UInt8], held: [UInt8])
        /// Pass these bytes on to the server (renumbered during authentication).
        case pass([UInt8])
        /// Refuse: the client gets an ERR packet with this sequence number and text.
        case refuse(Refusal)
    }

    public struct Refusal: Equatable, Sendable {
        /// The client asked the gateway for TLS (`client_speaks_tls`); otherwise a client
        /// protocol error (`client_error`).
        public let asksForTLS: Bool
        public let detail: String
    }

    enum State: Equatable { case beforeGreeting, response, authentication, relay, failed }

    /// A handshake response is a few hundred bytes; connection attributes may add up to 64 KiB.
    public static let maxResponse = 64 * 1024 + 1024
    /// Authentication packets from the client: a proof, a clear or RSA-encrypted password.
    public static let maxAuthPacket = 16 * 1024

    private(set) var state = State.beforeGreeting
    private var reader = MySQLPacketReader(maxPayload: maxResponse)
    /// The sequence number the client expects on the next packet it reads.
    public private(set) var clientExpects: UInt8 = 0

    public init() {}

    /// Authentication is over: bytes pass untouched.
    public var isRelaying: Bool { state == .relay }

    /// The gateway's greeting (sequence 0) went to the client.
    public mutating func greeted() {
        guard state == .beforeGreeting else { return }
        state = .response
        clientExpects = 2
    }

    /// The server sent the client a packet with this (client-side) sequence number.
    public mutating func serverSent(sequence: UInt8) {
        clientExpects = sequence &+ 2
    }

    /// The server's OK or ERR ended authentication: from now on bytes pass untouched.
    public mutating func authenticationEnded() -> Action {
        guard state == .authentication else { return .needMore }
        state = .relay
        guard reader.isEmpty else {
            return fail(false, "the client sent \(reader.buffered) bytes during authentication, unasked")
        }
        return .needMore
    }

    public mutating func receive(_ bytes: [UInt8]) -> Action {
        switch state {
        case .relay: return .pass(bytes)
        case .failed: return .needMore
        case .beforeGreeting:
            guard !bytes.isEmpty else { return .needMore }
            let tls = bytes.first == 0x16
            return fail(
                tls,
                tls
                    ? "the client sent a TLS ClientHello before the greeting: it already speaks TLS, and the gateway does not wrap TLS in TLS"
                    : "the client spoke before the server's greeting: not a MySQL client")
        case .response:
            reader.append(bytes)
            switch reader.next() {
            case .needMore: return .needMore
            case .oversized(let length):
                return fail(false, "the client's handshake response is larger than \(Self.maxResponse) bytes (\(length))")
            case .packet(let sequence, let payload):
                guard sequence == 1 else {
                    return fail(false, "the client's handshake response has sequence number \(sequence), not 1")
                }
                guard payload.count >= 32 else {
                    return fail(false, "the client's handshake response is truncated (\(payload.count) bytes)")
                }
                let capabilities = MySQLPacket.uint32(payload[...], at: 0)
                if capabilities & MySQLPacket.Capability.ssl != 0 {
                    return fail(
                        true,
                        "the client asked for TLS (CLIENT_SSL), which the gateway does not offer: the LAN side is plain by design, TLS is made towards the server; connect with TLS off (mariadb --skip-ssl, mysql --ssl-mode=DISABLED)")
                }
                guard capabilities & MySQLPacket.Capability.protocol41 != 0 else {
                    return fail(false, "the client does not speak protocol 4.1 (no CLIENT_PROTOCOL_41)")
                }
                guard payload[32...].contains(0) else {
                    return fail(false, "the client's handshake response is malformed: its user name has no end")
                }
                state = .authentication
                clientExpects = 2
                var held = MySQLPacket.frame(sequence: 2, payload)
                switch renumber() {
                case .pass(let more): held += more
                case .refuse(let refusal): return .refuse(refusal)
                default: break
                }
                return .answered(response: payload, held: held)
            }
        case .authentication:
            reader.append(bytes)
            return renumber()
        }
    }

    /// Whole authentication packets, each one sequence number up; a partial one waits.
    private mutating func renumber() -> Action {
        var out: [UInt8] = []
        while true {
            switch reader.next() {
            case .needMore:
                return .pass(out)
            case .oversized(let length):
                return fail(false, "the client's authentication packet is larger than \(Self.maxAuthPacket) bytes (\(length))")
            case .packet(let sequence, let payload):
                guard payload.count <= Self.maxAuthPacket else {
                    return fail(false, "the client's authentication packet is larger than \(Self.maxAuthPacket) bytes (\(payload.count))")
                }
                clientExpects = sequence &+ 1
                out += MySQLPacket.frame(sequence: sequence &+ 1, payload)
            }
        }
    }

    private mutating func fail(_ asksForTLS: Bool, _ detail: String) -> Action {
        state = .failed
        return .refuse(Refusal(asksForTLS: asksForTLS, detail: detail))
    }
}

/// Follows the client's packet boundaries after authentication without copying, to see its
/// COM_QUIT (a 1-byte packet `0x01`, sequence 0): MySQL and MariaDB servers close a session
/// after it without a TLS close_notify, and the gateway must not call that a truncation.
/// Not used with CLIENT_COMPRESS (other framing).
public struct MySQLQuitWatch: Sendable {
    private var header: [UInt8] = []
    private var remaining = 0
    private var quitPending = false
    /// The client's last whole packet was COM_QUIT, and nothing came after it.
    public private(set) var quitSent = false

    public init() {}

    public mutating func scan<Bytes: Collection>(_ bytes: Bytes) where Bytes.Element == UInt8 {
        var index = bytes.startIndex
        while index != bytes.endIndex {
            if remaining > 0 {
                let take = min(remaining, bytes.distance(from: index, to: bytes.endIndex))
                if quitPending {
                    quitSent = bytes[index] == 0x01
                    quitPending = false
                }
                remaining -= take
                index = bytes.index(index, offsetBy: take)
                continue
            }
            quitSent = false
            header.append(bytes[index])
            index = bytes.index(after: index)
            if header.count == 4 {
                remaining = Int(header[0]) | Int(header[1]) << 8 | Int(header[2]) << 16
                quitPending = remaining == 1 && header[3] == 0
                header = []
            }
        }
    }
}
