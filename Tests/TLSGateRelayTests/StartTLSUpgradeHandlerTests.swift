import NIOCore
import NIOEmbedded
import TLSGatePolicy
import Testing

@testable import TLSGateRelay

/// Stands in for the TLS handler: records that it was added.
private final class MarkerHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    var added = false
    var reads: [String] = []
    func handlerAdded(context: ChannelHandlerContext) { added = true }
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        reads.append(String(buffer: unwrapInboundIn(data)))
    }
}

/// Catches whatever would go past the upgrade handler before TLS.
private final class LeakCatcher: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    var leaked: [String] = []
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        leaked.append(String(buffer: unwrapInboundIn(data)))
    }
}

@Suite struct StartTLSUpgradeHandlerTests {
    final class Outcome {
        var upgraded: [String]?
        var refused: String?
    }

    private func setUp(_ proto: StartTLSProtocol = .smtp) throws -> (EmbeddedChannel, MarkerHandler, LeakCatcher, Outcome) {
        let channel = EmbeddedChannel()
        let marker = MarkerHandler()
        let catcher = LeakCatcher()
        let outcome = Outcome()
        let handler = StartTLSUpgradeHandler(
            proto, makeTLSHandler: { marker },
            onUpgraded: { outcome.upgraded = $0 }, onRefused: { why, _ in outcome.refused = why })
        try channel.pipeline.syncOperations.addHandler(handler)
        try channel.pipeline.syncOperations.addHandler(catcher)
        try channel.connect(to: SocketAddress(ipAddress: "198.19.0.10", port: 25)).wait()
        return (channel, marker, catcher, outcome)
    }

    private func written(_ channel: EmbeddedChannel) throws -> String {
        var out = ""
        while let buffer = try channel.readOutbound(as: ByteBuffer.self) { out += String(buffer: buffer) }
        return out
    }

    @Test(arguments: [true, false]) func smtpUpgradeThenTLSHandlerTakesOver(byteByByte: Bool) throws {
        let (channel, marker, catcher, outcome) = try setUp()
        func feed(_ text: String) throws {
            if byteByByte {
                for byte in text.utf8 { try channel.writeInbound(ByteBuffer(bytes: [byte])) }
            } else {
                try channel.writeInbound(ByteBuffer(string: text))
            }
        }
        try feed("220 mx ESMTP\r\n")
        #expect(try written(channel).hasPrefix("EHLO ["))
        try feed("250-mx\r\n250 STARTTLS\r\n")
        #expect(try written(channel) == "STARTTLS\r\n")
        #expect(!marker.added)
        try feed("220 go ahead\r\n")
        #expect(marker.added)
        #expect(outcome.upgraded?.count == 5 && outcome.refused == nil)
        // Nothing of the plain-text exchange went up the pipeline.
        #expect(catcher.leaked == [])
        // From now on bytes go to the TLS handler (the upgrade handler has left).
        try channel.writeInbound(ByteBuffer(string: "ciphertext"))
        #expect(marker.reads == ["ciphertext"])
        _ = try? channel.finish()
    }

    @Test func refusalIsReportedAndNothingLeaks() throws {
        let (channel, marker, catcher, outcome) = try setUp(.pop3)
        try channel.writeInbound(ByteBuffer(string: "+OK hi\r\n"))
        #expect(try written(channel) == "STLS\r\n")
        try channel.writeInbound(ByteBuffer(string: "-ERR no\r\n"))
        #expect(outcome.refused == "the server does not offer STLS: \"-ERR no\"")
        try channel.writeInbound(ByteBuffer(string: "+OK more\r\n"))
        #expect(!marker.added && catcher.leaked == [] && outcome.upgraded == nil)
        _ = try? channel.finish()
    }

    @Test func serverClosingMidExchangeIsARefusal() throws {
        let (channel, _, _, outcome) = try setUp(.imap)
        try channel.writeInbound(ByteBuffer(string: "* OK hi\r\n"))
        channel.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        #expect(outcome.refused == "the server closed the connection during the IMAP upgrade")
        _ = try? channel.finish()
    }

    @Test func addressLiteral() throws {
        #expect(StartTLSUpgradeHandler.addressLiteral(try SocketAddress(ipAddress: "198.19.0.1", port: 1)) == "[198.19.0.1]")
        #expect(StartTLSUpgradeHandler.addressLiteral(try SocketAddress(ipAddress: "2001:2::1", port: 1)) == "[IPv6:2001:2::1]")
        #expect(StartTLSUpgradeHandler.addressLiteral(try SocketAddress(ipAddress: "::ffff:198.19.0.1", port: 1)) == "[198.19.0.1]")
    }
}
