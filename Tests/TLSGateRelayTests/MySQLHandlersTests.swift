import NIOCore
import NIOEmbedded
import Testing

@testable import TLSGateRelay
@testable import TLSGateTLS

/// The two MySQL handlers around one `MySQLSession`, on `EmbeddedChannel`s, through a
/// caching_sha2_password full authentication: the client's channel (its key request answered
/// on that channel, its password passed on in clear) and the upstream one (the server's
/// packets renumbered, what they asked for handed to the client side first). Fed all at once
/// and byte by byte.
@Suite struct MySQLHandlersTests {
    typealias F = MySQLFixture
    static let password = Array("s3cret-pw".utf8)

    private func bytes(_ channel: EmbeddedChannel, inbound: Bool) throws -> [UInt8] {
        var out: [UInt8] = []
        while let buffer = try inbound ? channel.readInbound(as: ByteBuffer.self) : channel.readOutbound(as: ByteBuffer.self) {
            out += Array(buffer.readableBytesView)
        }
        return out
    }

    private func feed(_ channel: EmbeddedChannel, _ data: [UInt8], byteByByte: Bool) throws {
        if byteByByte {
            for byte in data { try channel.writeInbound(ByteBuffer(bytes: [byte])) }
        } else {
            try channel.writeInbound(ByteBuffer(bytes: data))
        }
    }

    @Test(arguments: [false, true]) func fullAuthenticationThroughBothHandlers(byteByByte: Bool) throws {
        var refusals: [String] = []
        let session = MySQLSession { reason, detail in refusals.append("\(reason): \(detail)") }
        let client = EmbeddedChannel(handler: MySQLClientHandler(session: session))
        let upstream = EmbeddedChannel(handler: MySQLServerAuthHandler(session: session))
        let parsed = try MySQLUpgrade.parse(F.greetingPayload(plugin: "caching_sha2_password")).get()
        let greeting = MySQLUpgrade.build(parsed)
        session.greet(greeting)
        #expect(try bytes(client, inbound: false) == greeting)

        // The handshake response: held for the server as sequence 2.
        try feed(client, F.packet(1, F.responsePayload()), byteByByte: byteByByte)
        #expect(try bytes(client, inbound: true) == F.packet(2, F.responsePayload()))

        // The server asks for full authentication (its 3): the client gets it as 2.
        try feed(upstream, F.packet(3, [0x01, 0x04]), byteByByte: byteByByte)
        #expect(try bytes(upstream, inbound: true) == F.packet(2, [0x01, 0x04]))

        // The key request is answered on the client's own channel; nothing goes upstream.
        let key = try MySQLGatewayKey.shared()
        try feed(client, F.packet(3, [0x02]), byteByByte: byteByByte)
        #expect(try bytes(client, inbound: false) == F.packet(4, [0x01] + key.publicKeyPEM))
        #expect(try bytes(client, inbound: true).isEmpty)

        // The encrypted password goes upstream in clear as the server's 4.
        var masked = Self.password + [0]
        for index in masked.indices { masked[index] ^= F.scramble[index % 20] }
        let sealed = try RSAKey(publicKeyPEM: key.publicKeyPEM).encrypt(masked)
        try feed(client, F.packet(5, sealed), byteByByte: byteByByte)
        #expect(try bytes(client, inbound: true) == F.packet(4, Self.password + [0]))

        // The server's OK (its 5) reaches the client as 6; then bytes pass untouched both ways.
        let ok: [UInt8] = [0, 0, 0, 2, 0, 0, 0]
        try feed(upstream, F.packet(5, ok) + [9, 9], byteByByte: byteByByte)
        #expect(try bytes(upstream, inbound: true) == F.packet(6, ok) + [9, 9])
        try feed(client, F.packet(0, [0x03, 0x31]), byteByByte: byteByByte)
        #expect(try bytes(client, inbound: true) == F.packet(0, [0x03, 0x31]))
        #expect(refusals.isEmpty)
        _ = try client.finish()
        _ = try upstream.finish()
    }
}
