/// MySQL/MariaDB (CLIENT_SSL): read the server's initial handshake (protocol 10), require
/// CLIENT_SSL, give the client a greeting the gateway rebuilds from the strictly parsed
/// fields (never the server's raw bytes) with CLIENT_SSL cleared, take the client's
/// handshake response, send the server an SSL request (the client's capabilities plus
/// CLIENT_SSL, sequence 1), then the TLS handshake. The client's response follows inside TLS
/// with sequence 2 (`MySQLClientSide`).
///
/// Why the client sees pre-TLS fields at all: a MySQL client says nothing before a greeting,
/// and the server uses the capabilities of the SSL request (they must be the client's), so
/// the client must answer before TLS can start. What it is given cannot hurt it: the scramble
/// is checked by the verified server itself (a forged one only makes the login fail), the
/// auth plugin must be a challenge-response one (`allowedPlugins`: a forged greeting cannot
/// ask for a clear-text password), and the version text is printable and bounded.
public struct MySQLUpgrade: UpgradeStateMachine {
    enum State: Equatable { case start, greeting, waitingForClient, done, failed }

    /// A real greeting is about 100 bytes.
    public static let maxGreeting = 1024
    public static let maxVersionLength = 100
    /// Plugins whose greeting data is a challenge the client answers with a proof (never the
    /// password): the ones a rebuilt greeting may name.
    public static let allowedPlugins: Set<String> = [
        "mysql_native_password", "caching_sha2_password", "sha256_password", "client_ed25519",
    ]
    /// The capabilities the gateway takes from the greeting and never passes on: the LAN side is plain.
    static let clearedCapabilities = MySQLPacket.Capability.ssl | MySQLPacket.Capability.sslVerifyServerCert

    /// The fields of a server greeting the gateway passes on.
    public struct Greeting: Equatable, Sendable {
        public var serverVersion: [UInt8]
        public var connectionID: UInt32
        /// 20 bytes.
        public var scramble: [UInt8]
        public var capabilities: UInt32
        public var charset: UInt8
        public var status: UInt16
        /// MariaDB's extended capabilities (the last 4 reserved bytes), when it says it is MariaDB.
        public var extendedCapabilities: UInt32
        public var authPlugin: String
    }

    private(set) var state = State.start
    private var reader = MySQLPacketReader(maxPayload: maxGreeting)
    public private(set) var greeting: Greeting?
    public private(set) var transcript: [String] = []

    public init() {}

    public mutating func start() -> UpgradeAction {
        guard state == .start else { return .refuse("already started") }
        state = .greeting
        return .needMore
    }

    public mutating func receive(_ bytes: [UInt8]) -> UpgradeAction {
        switch state {
        case .start, .greeting: break
        case .waitingForClient, .done:
            return fail("the server sent data after its greeting, unasked (\(bytes.count) bytes), before TLS")
        case .failed: return .refuse("the exchange already failed")
        }
        reader.append(bytes)
        switch reader.next() {
        case .needMore: return .needMore
        case .oversized(let length):
            return fail("the server's greeting is larger than \(Self.maxGreeting) bytes (\(length))")
        case .packet(let sequence, let payload):
            guard reader.isEmpty else {
                return fail("the server sent more than its greeting, unasked (\(reader.buffered) bytes), before TLS")
            }
            guard sequence == 0 else { return fail("the server's greeting has sequence number \(sequence), not 0") }
            if payload.first == 0xff {
                transcript.append("S: ERR \(MySQLPacket.errText(payload))")
                return fail("the server refused the connection: \(MySQLPacket.errText(payload))")
            }
            switch Self.parse(payload) {
            case .failure(let why):
                return fail(why.text)
            case .success(let parsed):
                greeting = parsed
                transcript.append(
                    "S: greeting, protocol 10, \(UpgradeText.printable(parsed.serverVersion)), auth \(parsed.authPlugin), CLIENT_SSL offered")
                state = .waitingForClient
                transcript.append("G: greeting for the client, rebuilt by the gateway, CLIENT_SSL cleared")
                return .greetClient(Self.build(parsed))
            }
        }
    }

    /// The client's handshake response payload (checked by `MySQLClientSide`): its first 32
    /// bytes, with CLIENT_SSL set, are the SSL request.
    public mutating func clientAnswered(_ response: [UInt8]) -> UpgradeAction {
        guard state == .waitingForClient, response.count >= 32 else {
            return fail("no usable client handshake response")
        }
        state = .done
        var request = Array(response.prefix(32))
        let capabilities = MySQLPacket.uint32(request[...], at: 0) | MySQLPacket.Capability.ssl
        request.replaceSubrange(0..<4, with: MySQLPacket.littleEndian32(capabilities))
        transcript.append("C: SSL request (the client's capabilities + CLIENT_SSL), sequence 1")
        return .sendThenStartTLS(MySQLPacket.frame(sequence: 1, request))
    }

    /// A client handshake response for `probe`, which has no client: protocol 4.1, utf8mb4.
    public static let probeResponse: [UInt8] =
        MySQLPacket.littleEndian32(
            Capability.protocol41 | Capability.secureConnection | Capability.pluginAuth | 1)
        + MySQLPacket.littleEndian32(16 * 1024 * 1024) + [45] + [UInt8](repeating: 0, count: 23)
        + Array("tlsgate-probe".utf8) + [0, 0]
    private typealias Capability = MySQLPacket.Capability

    struct ParseError: Error, Equatable { let text: String }

    /// Strict parse of a protocol 10 greeting payload; every field is checked, nothing is guessed.
    static func parse(_ payload: [UInt8]) -> Result<Greeting, ParseError> {
        func bad(_ text: String) -> Result<Greeting, ParseError> { .failure(ParseError(text: text)) }
        let p = payload[...]
        guard let version = p.first else { return bad("the server's greeting is empty") }
        guard version == 10 else {
            return bad("the server's greeting is not protocol 10 (\(version)): not a MySQL/MariaDB server, or too old")
        }
        guard let versionEnd = p.dropFirst().firstIndex(of: 0) else {
            return bad("the server's greeting is malformed: its version text has no end")
        }
        let serverVersion = Array(p[1..<versionEnd])
        guard (1...maxVersionLength).contains(serverVersion.count), serverVersion.allSatisfy({ (0x20...0x7e).contains($0) })
        else { return bad("the server's greeting is malformed: its version text is empty, too long or not printable") }
        var at = versionEnd + 1
        // connection id 4, scramble part 1: 8, filler 1, capabilities 2, charset 1, status 2,
        // capabilities (upper) 2, auth data length 1, reserved 10, scramble part 2: 13.
        guard p.count >= at + 44 else { return bad("the server's greeting is truncated (\(p.count) bytes)") }
        let connectionID = MySQLPacket.uint32(p, at: at)
        let scramble1 = Array(p[(at + 4)..<(at + 12)])
        guard p[at + 12] == 0 else { return bad("the server's greeting is malformed: no filler after the scramble") }
        var capabilities = MySQLPacket.uint16(p, at: at + 13)
        let charset = p[at + 15]
        let status = UInt16(MySQLPacket.uint16(p, at: at + 16))
        capabilities |= MySQLPacket.uint16(p, at: at + 18) << 16
        let authDataLength = p[at + 20]
        let extended = MySQLPacket.uint32(p, at: at + 27)
        at += 31
        for (flag, name) in [
            (Capability.protocol41, "CLIENT_PROTOCOL_41"), (Capability.secureConnection, "CLIENT_SECURE_CONNECTION"),
            (Capability.pluginAuth, "CLIENT_PLUGIN_AUTH"),
        ] where capabilities & flag == 0 {
            return bad("the server does not offer \(name) (too old for the gateway)")
        }
        guard capabilities & Capability.ssl != 0 else {
            return bad("the server does not offer TLS (no CLIENT_SSL in its greeting)")
        }
        guard authDataLength == 21 else {
            return bad("the server's greeting is malformed: auth data length \(authDataLength), not 21")
        }
        let scramble2 = Array(p[at..<(at + 12)])
        guard p[at + 12] == 0 else { return bad("the server's greeting is malformed: its scramble has no end") }
        at += 13
        let name = p[at...].prefix { $0 != 0 }
        // The name ends with a NUL (some old servers omit it at the very end); nothing follows.
        guard at + name.count == p.count || at + name.count == p.count - 1 else {
            return bad("the server's greeting is malformed: bytes after its auth plugin name")
        }
        let plugin = String(decoding: name, as: UTF8.self)
        guard allowedPlugins.contains(plugin) else {
            return bad(
                "the server's greeting names auth plugin \"\(UpgradeText.printable(name, max: 64))\", not one the gateway passes on (\(allowedPlugins.sorted().joined(separator: ", ")))")
        }
        // MariaDB clears bit 0 (CLIENT_MYSQL) and puts its extended capabilities in the reserved bytes.
        let mariaDB = capabilities & 1 == 0
        return .success(
            Greeting(
                serverVersion: serverVersion, connectionID: connectionID, scramble: scramble1 + scramble2,
                capabilities: capabilities, charset: charset, status: status,
                extendedCapabilities: mariaDB ? extended : 0, authPlugin: plugin))
    }

    /// The greeting the client gets: the passed fields only, CLIENT_SSL cleared, sequence 0.
    static func build(_ greeting: Greeting) -> [UInt8] {
        let capabilities = greeting.capabilities & ~clearedCapabilities
        var payload: [UInt8] = [10] + greeting.serverVersion + [0]
        payload += MySQLPacket.littleEndian32(greeting.connectionID)
        payload += greeting.scramble.prefix(8) + [0]
        payload += [UInt8(capabilities & 0xff), UInt8(capabilities >> 8 & 0xff), greeting.charset]
        payload += [UInt8(greeting.status & 0xff), UInt8(greeting.status >> 8)]
        payload += [UInt8(capabilities >> 16 & 0xff), UInt8(capabilities >> 24), 21]
        payload += [UInt8](repeating: 0, count: 6) + MySQLPacket.littleEndian32(greeting.extendedCapabilities)
        payload += greeting.scramble.dropFirst(8) + [0]
        payload += Array(greeting.authPlugin.utf8) + [0]
        return MySQLPacket.frame(sequence: 0, payload)
    }

    /// The scramble in a greeting packet `build` made (what the client masks a
    /// caching_sha2_password with); nil for anything shorter than such a greeting.
    static func scramble(ofBuilt packet: [UInt8]) -> [UInt8]? {
        let p = packet.dropFirst(4)
        guard let versionEnd = p.dropFirst().firstIndex(of: 0), versionEnd + 44 <= p.endIndex else { return nil }
        // After the version's NUL: connection ID 4, scramble 8, … 31 bytes in all, scramble 12.
        return Array(p[(versionEnd + 5)..<(versionEnd + 13)] + p[(versionEnd + 32)..<(versionEnd + 44)])
    }

    private mutating func fail(_ why: String) -> UpgradeAction {
        state = .failed
        return .refuse(why)
    }
}
