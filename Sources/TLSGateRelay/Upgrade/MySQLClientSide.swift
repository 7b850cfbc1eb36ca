import TLSGateTLS

/// The LAN side of a `starttls = "mysql"` connection, as a value: the client's handshake
/// response (checked, and held for the server renumbered to sequence 2), then its packets
/// during authentication renumbered `lead` up, then nothing (the relay passes bytes untouched).
///
/// A client that sets CLIENT_SSL (an SSL request: it asks the gateway for TLS) is answered
/// with an ERR packet: the LAN side is plain by design.
///
/// caching_sha2_password full authentication (the server, on TLS, wants the password in
/// clear; the client, on a plain link, does RSA): the gateway is the client's RSA endpoint.
/// Its public key request (exactly one byte `0x02`) is answered by the gateway (`0x01` + the
/// worker's PEM public key, `MySQLGatewayKey`), which puts the client two packets ahead of
/// the server (`lead` becomes 255, one behind); its password, RSA-OAEP encrypted with that
/// key (exactly the key's size), is decrypted, unmasked with the scramble (the greeting's,
/// or an auth switch's) and goes to the server as the clear password and a NUL, which
/// travels only inside the verified TLS. Anything else is refused: a password encrypted with
/// another key, one in clear (a client sends that only on a link it believes secure), a
/// second key request, a decrypted password without its single final NUL.
public struct MySQLClientSide: Sendable {
    public enum Action: Equatable, Sendable {
        case needMore
        /// The client's handshake response: `sslRequest` goes to the machine's
        /// `clientAnswered`; `held` (the response as sequence 2, and anything after it
        /// renumbered) goes to the server once it is verified.
        case answered(response: [UInt8], held: [UInt8])
        /// Pass these bytes on to the server (renumbered during authentication).
        case pass([UInt8])
        /// Write `toClient` to the client (the gateway's own answer), pass `toServer` on.
        case reply(toClient: [UInt8], toServer: [UInt8])
        /// Refuse: the client gets an ERR packet with this sequence number and text.
        case refuse(Refusal)
    }

    public struct Refusal: Error, Equatable, Sendable {
        /// The client asked the gateway for TLS (`client_speaks_tls`); otherwise a client
        /// protocol error (`client_error`).
        public let asksForTLS: Bool
        public let detail: String
        /// The gateway's own RSA key could not be made (`starttls_refused`).
        public var gatewayKey = false
    }

    enum State: Equatable { case beforeGreeting, response, authentication, relay, failed }
    /// caching_sha2_password full authentication, as the client's RSA endpoint.
    enum FullAuthentication: Equatable { case none, requested, keySent, done }

    /// Where the gateway's RSA key comes from (made on first use).
    public typealias KeySource = @Sendable () throws(RSAKeyError) -> RSAKey

    /// A handshake response is a few hundred bytes; connection attributes may add up to 64 KiB.
    public static let maxResponse = 64 * 1024 + 1024
    /// Authentication packets from the client: a proof, a clear or RSA-encrypted password.
    public static let maxAuthPacket = 16 * 1024
    /// During full authentication: the ciphertext of the largest RSA key `RSAKey` makes
    /// (8192 bits); the packet must then be exactly the gateway key's size, or one byte.
    public static let maxFullAuthPacket = 1024

    private(set) var state = State.beforeGreeting
    private var reader = MySQLPacketReader(maxPayload: maxResponse)
    /// The sequence number the client expects on the next packet it reads.
    public private(set) var clientExpects: UInt8 = 0
    /// How far the server's sequence numbers are ahead of the client's during authentication:
    /// 1 (the SSL request), 255 (one behind) once the gateway answered a public key request.
    public private(set) var lead: UInt8 = 1
    private(set) var fullAuthentication = FullAuthentication.none
    /// The scramble the client masks its password with (20 bytes).
    private var scramble: [UInt8] = []
    private let key: KeySource

    public init(key: @escaping KeySource = MySQLGatewayKey.shared) {
        self.key = key
    }

    /// Authentication is over: bytes pass untouched.
    public var isRelaying: Bool { state == .relay }

    /// The gateway's greeting (sequence 0, with this scramble) went to the client.
    public mutating func greeted(scramble: [UInt8] = []) {
        guard state == .beforeGreeting else { return }
        state = .response
        clientExpects = 2
        self.scramble = scramble
    }

    /// The server sent the client a packet with this (client-side) sequence number.
    public mutating func serverSent(sequence: UInt8) {
        clientExpects = sequence &+ 2
    }

    /// What the server's authentication packets asked for so far (`MySQLServerAuth`): full
    /// authentication (the client's next packets are the RSA exchange), an auth switch to
    /// caching_sha2_password with its own scramble.
    public mutating func serverAsked(fullAuthentication: Bool, switchScramble: [UInt8]?) {
        if let switchScramble { scramble = switchScramble }
        if fullAuthentication, self.fullAuthentication == .none {
            self.fullAuthentication = .requested
            reader.maxPayload = Self.maxFullAuthPacket
        }
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
                reader.maxPayload = Self.maxAuthPacket
                clientExpects = 2
                var held = MySQLPacket.frame(sequence: 2, payload)
                switch renumber() {
                case .pass(let more): held += more
                case .refuse(let refusal): return .refuse(refusal)
                default: break  // no full authentication before the server's first answer
                }
                return .answered(response: payload, held: held)
            }
        case .authentication:
            reader.append(bytes)
            return renumber()
        }
    }

    /// Whole authentication packets, each `lead` up (full authentication: the RSA
    /// exchange); a partial one waits.
    private mutating func renumber() -> Action {
        var out: [UInt8] = []
        var toClient: [UInt8] = []
        while true {
            switch reader.next() {
            case .needMore:
                if holdsSecret { secretBytes = out }
                return toClient.isEmpty ? .pass(out) : .reply(toClient: toClient, toServer: out)
            case .oversized(let length):
                dropSecret(&out)
                if fullAuthentication == .requested || fullAuthentication == .keySent {
                    return fail(false, "the client's answer to full authentication is larger than \(Self.maxFullAuthPacket) bytes (\(length))")
                }
                return fail(false, "the client's authentication packet is larger than \(Self.maxAuthPacket) bytes (\(length))")
            case .packet(let sequence, let payload):
                guard payload.count <= Self.maxAuthPacket else {
                    dropSecret(&out)
                    return fail(false, "the client's authentication packet is larger than \(Self.maxAuthPacket) bytes (\(payload.count))")
                }
                clientExpects = sequence &+ 1
                switch fullAuthentication {
                case .requested, .keySent:
                    switch passwordExchange(sequence, payload, toServer: &out) {
                    case .success(let answer):
                        toClient += answer
                    case .failure(let refusal):
                        dropSecret(&out)
                        state = .failed
                        return .refuse(refusal)
                    }
                case .none, .done:
                    out += MySQLPacket.frame(sequence: sequence &+ lead, payload)
                }
            }
        }
    }

    /// One client packet of caching_sha2_password full authentication: what goes back to
    /// the client; the clear password, framed, is appended to `toServer`. Nothing here names
    /// the password or the key: refusals say sizes only.
    private mutating func passwordExchange(
        _ sequence: UInt8, _ payload: [UInt8], toServer out: inout [UInt8]
    ) -> Result<[UInt8], Refusal> {
        func refuse(_ detail: String, gatewayKey: Bool = false) -> Result<[UInt8], Refusal> {
            .failure(Refusal(asksForTLS: false, detail: detail, gatewayKey: gatewayKey))
        }
        let rsa: RSAKey
        do {
            rsa = try key()
        } catch {
            return refuse("the gateway could not make its RSA key for caching_sha2_password: \(error)", gatewayKey: true)
        }
        if payload == [Self.publicKeyRequest] {
            guard fullAuthentication == .requested else {
                return refuse("the client asked for the public key a second time")
            }
            // The gateway answers in the server's place: the client is now two packets ahead.
            fullAuthentication = .keySent
            lead = lead &- 2
            clientExpects = sequence &+ 3
            return .success(MySQLPacket.frame(sequence: sequence &+ 1, [0x01] + rsa.publicKeyPEM))
        }
        guard payload.count == rsa.size else {
            if payload.last == 0 {
                return refuse(
                    "the client sent its password in clear (\(payload.count) bytes ending in NUL) on the plain LAN side, where the gateway accepts only the RSA exchange: a MySQL client does that only on a link it believes secure (TLS, a local socket); refused")
            }
            return refuse(
                "the client's answer to full authentication is \(payload.count) bytes: neither a public key request (the byte 0x02) nor a password encrypted with the gateway's \(rsa.bits)-bit key (\(rsa.size) bytes)")
        }
        guard scramble.count == 20 else {
            return refuse("no 20-byte scramble to unmask the client's password with")
        }
        guard var password = try? rsa.decrypt(payload) else {
            return refuse(
                "the client's password does not decrypt with the gateway's RSA key: it was encrypted with another one (a server public key configured in the client?); let the client ask for the key instead")
        }
        defer { SecretBytes.wipe(&password) }
        for index in password.indices { password[index] ^= scramble[index % scramble.count] }
        guard password.last == 0, password.firstIndex(of: 0) == password.count - 1 else {
            return refuse("the client's password is malformed after decryption (no single final NUL: another scramble?)")
        }
        fullAuthentication = .done
        reader.maxPayload = Self.maxAuthPacket
        // `out` gets room for the rest of what is buffered too (renumbering keeps sizes), so
        // no later append moves it and leaves the password behind in freed storage.
        out.reserveCapacity(out.count + 4 + password.count + reader.buffered)
        let length = password.count
        out += [UInt8(length & 0xff), UInt8(length >> 8 & 0xff), UInt8(length >> 16 & 0xff), sequence &+ lead]
        out += password
        holdsSecret = true
        return .success([])
    }

    /// The last action's bytes carry the clear password (`wipeSecret` once they are used).
    private(set) var holdsSecret = false
    /// A copy of those bytes, kept only to overwrite them: once the action is gone, this is
    /// the last reference and the wipe happens in place.
    private var secretBytes: [UInt8] = []

    /// A refusal after the password was framed: those bytes go nowhere; overwrite them.
    private mutating func dropSecret(_ out: inout [UInt8]) {
        guard holdsSecret else { return }
        holdsSecret = false
        SecretBytes.wipe(&out)
    }

    /// Overwrites the bytes of the action that carried the password. Call after the action
    /// itself is gone (its bytes forwarded, its value out of scope).
    public mutating func wipeSecret() {
        guard holdsSecret else { return }
        holdsSecret = false
        SecretBytes.wipe(&secretBytes)
        secretBytes = []
    }

    /// caching_sha2_password's public key request.
    static let publicKeyRequest: UInt8 = 0x02

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
