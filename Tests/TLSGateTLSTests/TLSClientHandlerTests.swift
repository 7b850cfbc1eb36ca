import NIOCore
import NIOEmbedded
import TLSGatePolicy
import Testing

@testable import TLSGateTLS

/// Records what the TLS handler sends up the pipeline.
final class Recorder: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    var received: [UInt8] = []
    var events: [TLSClientEvent] = []
    var inputClosed = false
    var errors: [Error] = []

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        received.append(contentsOf: unwrapInboundIn(data).readableBytesView)
    }
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let e = event as? TLSClientEvent { events.append(e) }
        if let e = event as? ChannelEvent, e == .inputClosed { inputClosed = true }
    }
    func errorCaught(context: ChannelHandlerContext, error: Error) { errors.append(error) }

    var tlsError: TLSError? { errors.compactMap { $0 as? TLSError }.first }
    var handshake: TLSHandshakeInfo? {
        for case .handshakeCompleted(let info) in events { return info }
        return nil
    }
}

/// Writes and flushes `bytes` (through the handlers after it) once the handshake completed.
final class WriteOnHandshake: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    let bytes: [UInt8]
    init(_ bytes: [UInt8]) { self.bytes = bytes }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .handshakeCompleted = event as? TLSClientEvent {
            context.writeAndFlush(wrapOutboundOut(ByteBuffer(bytes: bytes)), promise: nil)
        }
        context.fireUserInboundEventTriggered(event)
    }
}

struct Pair {
    let channel: EmbeddedChannel
    let handler: TLSClientHandler
    let recorder: Recorder
    let server: InMemoryTLSServer
    let byteByByte: Bool

    init(
        identity: TLSPeerIdentity = .dnsName("good.test"),
        server: InMemoryTLSServer? = nil,
        configuration: TLSClientConfiguration? = nil,
        context: TLSContext? = nil,
        byteByByte: Bool = false,
        reportsPeerChain: Bool = true
    ) throws {
        let pki = TestPKI.shared
        let tlsContext = try context ?? TLSContext(
            configuration: configuration ?? TLSClientConfiguration(trustSystem: false, caFiles: [pki.path("root.pem")]))
        handler = TLSClientHandler(
            context: tlsContext, identity: identity, sessionKey: "test|\(identity)", reportsPeerChain: reportsPeerChain)
        recorder = Recorder()
        channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(handler)
        try channel.pipeline.syncOperations.addHandler(recorder)
        self.server = server ?? InMemoryTLSServer(certificate: pki.path("good.pem"), key: pki.path("good.key"))
        self.byteByByte = byteByByte
        try channel.connect(to: SocketAddress(ipAddress: "198.19.0.10", port: 443)).wait()
    }

    /// Moves bytes both ways until neither side has anything more to say.
    func pump() throws {
        for _ in 0..<64 {
            var moved = false
            while let out = try channel.readOutbound(as: ByteBuffer.self) {
                moved = true
                let reply = server.receive(out)
                try deliver(reply)
            }
            if !moved { return }
        }
        Issue.record("pump did not settle")
    }

    func deliver(_ buffer: ByteBuffer) throws {
        guard buffer.readableBytes > 0, channel.isActive else { return }
        if byteByByte {
            for byte in buffer.readableBytesView {
                guard channel.isActive else { return }
                var one = channel.allocator.buffer(capacity: 1)
                one.writeInteger(byte)
                try channel.writeInbound(one)
            }
        } else {
            try channel.writeInbound(buffer)
        }
    }
}

@Suite struct TLSClientHandlerTests {
    @Test(arguments: [false, true])
    func handshakeAndDataBothWays(byteByByte: Bool) throws {
        let pair = try Pair(byteByByte: byteByByte)
        try pair.pump()
        let info = try #require(pair.recorder.handshake)
        #expect(info.version == "TLSv1.3")
        #expect(info.resumed == false)
        #expect(pair.recorder.errors.isEmpty)

        let upstream = Array((0..<100_000).map { UInt8(truncatingIfNeeded: $0 &* 7) })
        try pair.channel.writeAndFlush(ByteBuffer(bytes: upstream)).wait()
        try pair.pump()
        #expect(pair.server.received == upstream)

        let downstream = Array((0..<70_000).map { UInt8(truncatingIfNeeded: $0 &* 13) })
        try pair.deliver(pair.server.send(downstream))
        #expect(pair.recorder.received == downstream)
    }

    /// What the pipeline writes on hearing that the handshake completed (the relay replays
    /// the client's first bytes) leaves in the same write as the client's Finished: one
    /// write, one TCP segment, not two.
    @Test func firstBytesLeaveWithTheLastHandshakeFlight() throws {
        let pair = try Pair()
        let request = Array("GET / HTTP/1.1\r\n\r\n".utf8)
        try pair.channel.pipeline.syncOperations.addHandler(WriteOnHandshake(request), position: .after(pair.handler))
        let hello = try #require(try pair.channel.readOutbound(as: ByteBuffer.self))
        try pair.deliver(pair.server.receive(hello))  // the server's whole flight: the client is done
        #expect(pair.recorder.handshake != nil)
        let flight = try #require(try pair.channel.readOutbound(as: ByteBuffer.self))
        #expect(try pair.channel.readOutbound(as: ByteBuffer.self) == nil)
        _ = pair.server.receive(flight)
        #expect(pair.server.handshakeDone)
        #expect(pair.server.received == request)
    }

    @Test func serverCloseNotifyClosesInputOnly() throws {
        let pair = try Pair()
        try pair.pump()
        try pair.deliver(pair.server.sendCloseNotify())
        #expect(pair.recorder.inputClosed)
        #expect(pair.channel.isActive)
        // The client may still send after the server finished.
        try pair.channel.writeAndFlush(ByteBuffer(string: "late")).wait()
        try pair.pump()
        #expect(pair.server.received == Array("late".utf8))
    }

    /// After the server's close_notify, whatever it keeps sending is dropped at once:
    /// 100 MB in 64 KiB reads leave nothing buffered.
    @Test func bytesAfterCloseNotifyAreNotBuffered() throws {
        let pair = try Pair()
        try pair.pump()
        #expect(pair.recorder.handshake != nil)
        var closeNotify = pair.server.sendCloseNotify()
        // The close_notify and garbage behind it in the same read.
        closeNotify.writeBytes([UInt8](repeating: 0x17, count: 1000))
        try pair.deliver(closeNotify)
        #expect(pair.recorder.inputClosed)
        let bio = try #require(pair.handler.connection?.bio)
        #expect(bio.bufferedInboundBytes == 0)
        let chunk = ByteBuffer(bytes: [UInt8](repeating: 0x17, count: 64 * 1024))
        var maxBuffered = 0
        for _ in 0..<(100 * 1024 * 1024 / chunk.readableBytes) {
            try pair.channel.writeInbound(chunk)
            maxBuffered = max(maxBuffered, bio.bufferedInboundBytes)
        }
        #expect(maxBuffered == 0)
        #expect(pair.channel.isActive)  // the client may still send; only input is over
    }

    @Test func halfCloseSendsCloseNotify() throws {
        let pair = try Pair()
        try pair.pump()
        try pair.channel.writeAndFlush(ByteBuffer(string: "bye")).wait()
        let closed = pair.channel.close(mode: .output)
        try pair.pump()
        #expect(pair.server.received == Array("bye".utf8))
        #expect(pair.server.gotCloseNotify)
        _ = closed
    }

    @Test func tcpEOFWithoutCloseNotifyIsAnError() throws {
        let pair = try Pair()
        try pair.pump()
        pair.channel.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        let error = try #require(pair.recorder.tlsError)
        #expect(error.kind == .uncleanShutdown)
        #expect(!pair.recorder.inputClosed)
    }

    @Test func eofDuringHandshake() throws {
        let pair = try Pair()
        _ = try pair.channel.readOutbound(as: ByteBuffer.self)  // ClientHello, never answered
        pair.channel.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        #expect(pair.recorder.tlsError?.kind == .closedDuringHandshake)
        #expect(pair.recorder.handshake == nil)
    }

    @Test func wrongNameIsRefusedWithOpenSSLReason() throws {
        let pair = try Pair(identity: .dnsName("other.test"))
        try pair.pump()
        let error = try #require(pair.recorder.tlsError)
        #expect(error.kind == .verificationFailed)
        #expect(error.verifyMessage?.lowercased().contains("hostname mismatch") == true)
        #expect(error.reasons.contains { $0.contains("certificate verify failed") })
        #expect(pair.recorder.handshake == nil)
        #expect(pair.recorder.received.isEmpty)
        #expect(!pair.channel.isActive)
    }

    @Test func untrustedCertificateIsRefused() throws {
        let pki = TestPKI.shared
        let server = InMemoryTLSServer(certificate: pki.path("self.pem"), key: pki.path("self.key"))
        let pair = try Pair(server: server)
        try pair.pump()
        let error = try #require(pair.recorder.tlsError)
        #expect(error.kind == .verificationFailed)
        #expect(error.verifyMessage?.contains("self-signed") == true)
    }

    @Test func ipIdentityUsesIPSANs() throws {
        let good = try Pair(identity: .ipAddress("198.19.0.10"))
        try good.pump()
        #expect(good.recorder.handshake != nil)
        let bad = try Pair(identity: .ipAddress("198.19.0.11"))
        try bad.pump()
        #expect(bad.recorder.tlsError?.kind == .verificationFailed)
    }

    @Test(arguments: [("a.wild.test", true), ("a.b.wild.test", false), ("wild.test", false)])
    func wildcardMatchesOneLabel(name: String, accepted: Bool) throws {
        let pki = TestPKI.shared
        let server = InMemoryTLSServer(certificate: pki.path("wild.pem"), key: pki.path("wild.key"))
        let pair = try Pair(identity: .dnsName(name), server: server)
        try pair.pump()
        #expect((pair.recorder.handshake != nil) == accepted)
    }

    @Test func legacyServerIsRefusedAtTheFloor() throws {
        let pki = TestPKI.shared
        let server = InMemoryTLSServer(
            certificate: pki.path("good.pem"), key: pki.path("good.key"), minVersion: 0x0301, maxVersion: 0x0302)
        let pair = try Pair(server: server)
        try pair.pump()
        let error = try #require(pair.recorder.tlsError)
        #expect(error.kind == .handshakeFailed)
        #expect(error.detail.contains("protocol"))
    }

    @Test func maxVersionIsHonoured() throws {
        let pki = TestPKI.shared
        let pair = try Pair(
            configuration: TLSClientConfiguration(trustSystem: false, caFiles: [pki.path("root.pem")], maxVersion: .tls1_2))
        try pair.pump()
        #expect(pair.recorder.handshake?.version == "TLSv1.2")
    }

    @Test func ticketsAreUsedOnceAndRefilled() throws {
        let pki = TestPKI.shared
        let context = try TLSContext(configuration: TLSClientConfiguration(trustSystem: false, caFiles: [pki.path("root.pem")]))
        let serverContext = InMemoryTLSServer.Context(certificate: pki.path("good.pem"), key: pki.path("good.key"))
        let key = "test|good.test"
        let first = try Pair(server: InMemoryTLSServer(context: serverContext), context: context)
        try first.pump()
        // TLS 1.3 tickets arrive after the handshake, with the first application data.
        try first.deliver(first.server.send(Array("hello".utf8)))
        #expect(first.recorder.handshake?.resumed == false)
        #expect(context.sessions.count == 1)
        let tickets = context.sessions.sessions(for: key)
        #expect(tickets == 2)  // OpenSSL servers send two after a full handshake

        // Two connections at once each take their own ticket, and both resume.
        let second = try Pair(server: InMemoryTLSServer(context: serverContext), context: context)
        let third = try Pair(server: InMemoryTLSServer(context: serverContext), context: context)
        #expect(context.sessions.sessions(for: key) == 0)
        try second.pump()
        try third.pump()
        #expect(second.recorder.handshake?.resumed == true)
        #expect(third.recorder.handshake?.resumed == true)
        // Each resumed connection brings a fresh ticket back.
        try second.deliver(second.server.send(Array("a".utf8)))
        try third.deliver(third.server.send(Array("b".utf8)))
        #expect(context.sessions.sessions(for: key) == 2)
        let fourth = try Pair(server: InMemoryTLSServer(context: serverContext), context: context)
        try fourth.pump()
        #expect(fourth.recorder.handshake?.resumed == true)
    }

    @Test func missingCAFileIsAConfigurationError() {
        #expect(throws: TLSError.self) {
            try TLSContext(configuration: TLSClientConfiguration(trustSystem: false, caFiles: ["/nonexistent/ca.pem"]))
        }
        do {
            _ = try TLSContext(configuration: TLSClientConfiguration(trustSystem: false, caFiles: ["/nonexistent/ca.pem"]))
        } catch {
            #expect(error.kind == .configuration)
            #expect(error.description.contains("/nonexistent/ca.pem"))
            #expect(!error.reasons.isEmpty)
        }
    }
}
