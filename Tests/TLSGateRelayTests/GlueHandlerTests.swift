import NIOCore
import NIOEmbedded
import Testing

@testable import TLSGateRelay
@testable import TLSGateTLS

final class EventLog: RelayEvents {
    var up = 0
    var down = 0
    var inputClosed: [RelayStateMachine.Side] = []
    var closed: [RelayStateMachine.Side] = []
    var errors: [String] = []
    var handshakes = 0
    var refuseFirstBytes = false
    var firstBytes: [[UInt8]] = []
    func admitFirstBytes(from side: RelayStateMachine.Side, _ buffer: ByteBuffer) -> Bool {
        firstBytes.append(Array(buffer.readableBytesView))
        return !refuseFirstBytes
    }
    func transferred(from side: RelayStateMachine.Side, bytes: Int) {
        if side == .client { up += bytes } else { down += bytes }
    }
    func inputClosed(_ side: RelayStateMachine.Side) { inputClosed.append(side) }
    func handshakeCompleted(_ info: TLSHandshakeInfo) { handshakes += 1 }
    func failed(_ side: RelayStateMachine.Side, _ error: Error) { errors.append("\(error)") }
    func closed(_ side: RelayStateMachine.Side) { closed.append(side) }
}

/// Counts the reads that reach the head of the pipeline.
final class ReadCounter: ChannelOutboundHandler {
    typealias OutboundIn = Any
    var reads = 0
    func read(context: ChannelHandlerContext) {
        reads += 1
        context.read()
    }
}

struct GluedPair {
    let client = EmbeddedChannel()
    let upstream = EmbeddedChannel()
    let clientReads = ReadCounter()
    let upstreamReads = ReadCounter()
    let events = EventLog()

    /// With `tickFlush`, a side's reads flush the other side at the end of that side's
    /// event-loop tick (in the worker both channels share one loop); without, at once.
    init(tickFlush: Bool = false) throws {
        let a = GlueHandler(
            side: .client, events: events, flusher: tickFlush ? TickFlusher(eventLoop: client.embeddedEventLoop) : nil)
        let b = GlueHandler(
            side: .upstream, events: events, flusher: tickFlush ? TickFlusher(eventLoop: upstream.embeddedEventLoop) : nil)
        GlueHandler.join(a, b)
        try client.pipeline.syncOperations.addHandler(clientReads)
        try client.pipeline.syncOperations.addHandler(a)
        try upstream.pipeline.syncOperations.addHandler(upstreamReads)
        try upstream.pipeline.syncOperations.addHandler(b)
    }
}

@Suite struct GlueHandlerTests {
    @Test func bytesCrossAndAreCounted() throws {
        let pair = try GluedPair()
        try pair.client.writeInbound(ByteBuffer(string: "GET / HTTP/1.1\r\n\r\n"))
        #expect(try pair.upstream.readOutbound(as: ByteBuffer.self) == ByteBuffer(string: "GET / HTTP/1.1\r\n\r\n"))
        try pair.upstream.writeInbound(ByteBuffer(string: "HTTP/1.1 200 OK\r\n"))
        #expect(try pair.client.readOutbound(as: ByteBuffer.self) == ByteBuffer(string: "HTTP/1.1 200 OK\r\n"))
        #expect(pair.events.up == 18)
        #expect(pair.events.down == 17)
    }

    @Test func slowPartnerStopsReadsUntilWritable() throws {
        let pair = try GluedPair()
        pair.upstream.isWritable = false
        pair.client.read()
        #expect(pair.clientReads.reads == 0)  // held back: the upstream cannot take more
        pair.upstream.isWritable = true
        pair.upstream.pipeline.fireChannelWritabilityChanged()
        #expect(pair.clientReads.reads == 1)  // released once it can
        pair.client.read()
        #expect(pair.clientReads.reads == 2)
    }

    @Test func inputClosedIsReported() throws {
        let pair = try GluedPair()
        pair.client.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        #expect(pair.events.inputClosed == [.client])
    }

    @Test func earlyDataAndHalfCloseAreHeldUntilJoined() throws {
        let events = EventLog()
        let client = EmbeddedChannel()
        let upstream = EmbeddedChannel()
        let a = GlueHandler(side: .client, events: events)
        let b = GlueHandler(side: .upstream, events: events)
        try client.pipeline.syncOperations.addHandler(a)
        try upstream.pipeline.syncOperations.addHandler(b)
        try client.writeInbound(ByteBuffer(string: "EHLO"))
        client.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        #expect(events.inputClosed.isEmpty)
        #expect(try upstream.readOutbound(as: ByteBuffer.self) == nil)
        GlueHandler.join(a, b)
        #expect(try upstream.readOutbound(as: ByteBuffer.self) == ByteBuffer(string: "EHLO"))
        #expect(events.inputClosed == [.client])
        #expect(events.up == 4)
    }

    @Test func firstBytesAreShownOnceAndCanBeRefused() throws {
        let pair = try GluedPair()
        pair.events.refuseFirstBytes = true
        try pair.client.writeInbound(ByteBuffer(bytes: [0x16, 0x03, 0x01, 0x00, 0x2a]))
        #expect(pair.events.firstBytes == [[0x16, 0x03, 0x01, 0x00, 0x2a]])
        #expect(try pair.upstream.readOutbound(as: ByteBuffer.self) == nil)  // never forwarded
        #expect(pair.events.up == 0)

        let other = try GluedPair()
        try other.client.writeInbound(ByteBuffer(string: "GET"))
        try other.client.writeInbound(ByteBuffer(string: " /"))
        #expect(other.events.firstBytes.count == 1)
        #expect(other.events.up == 5)
    }

    @Test func readsOfOneTickAreFlushedOnceAtItsEnd() throws {
        let pair = try GluedPair(tickFlush: true)
        let outbound = OutboundOrder()
        try pair.upstream.pipeline.syncOperations.addHandler(outbound, position: .first)
        pair.client.pipeline.fireChannelRead(ByteBuffer(string: "GET /a HTTP/1.1\r\n\r\n"))
        pair.client.pipeline.fireChannelReadComplete()
        pair.client.pipeline.fireChannelRead(ByteBuffer(string: "GET /b HTTP/1.1\r\n\r\n"))
        pair.client.pipeline.fireChannelReadComplete()
        // Written, not yet flushed: the tick is not over.
        #expect(try pair.upstream.readOutbound(as: ByteBuffer.self) == nil)
        #expect(outbound.events.isEmpty)
        pair.upstream.embeddedEventLoop.run()  // the end of the tick
        #expect(outbound.events == ["flush"])
        #expect(try pair.upstream.readOutbound(as: ByteBuffer.self) == ByteBuffer(string: "GET /a HTTP/1.1\r\n\r\n"))
        #expect(try pair.upstream.readOutbound(as: ByteBuffer.self) == ByteBuffer(string: "GET /b HTTP/1.1\r\n\r\n"))
        pair.upstream.embeddedEventLoop.run()
        #expect(outbound.events == ["flush"])  // nothing queued: no second flush
    }

    @Test func halfCloseFlushesWhatTheTickQueuedFirst() throws {
        let pair = try GluedPair(tickFlush: true)
        pair.upstream.pipeline.fireChannelRead(ByteBuffer(string: "HTTP/1.1 200 OK\r\n\r\n"))
        pair.upstream.pipeline.fireChannelReadComplete()
        // The server's FIN in the same tick: the response goes to the client before the
        // relay half-closes towards it.
        pair.upstream.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        #expect(pair.events.inputClosed == [.upstream])
        #expect(try pair.client.readOutbound(as: ByteBuffer.self) == ByteBuffer(string: "HTTP/1.1 200 OK\r\n\r\n"))
    }

    /// The relay half-closing towards the server after the client's last bytes (`QUIT`), or
    /// closing the client after a server's last reply and its truncation, in the same tick:
    /// the queued bytes go out first.
    @Test(arguments: [true, false])
    func aCloseSendsWhatTheTickQueuedFirst(halfClose: Bool) throws {
        let pair = try GluedPair(tickFlush: true)
        let order = OutboundOrder()
        let (reader, closing) = halfClose ? (pair.client, pair.upstream) : (pair.upstream, pair.client)
        try closing.pipeline.syncOperations.addHandler(order, position: .first)
        reader.pipeline.fireChannelRead(ByteBuffer(string: "QUIT\r\n"))
        reader.pipeline.fireChannelReadComplete()
        if halfClose {
            try closing.pipeline.syncOperations.handler(type: GlueHandler.self).shutdownOutput()
        } else {
            closing.close(promise: nil)
        }
        #expect(order.events == ["flush", halfClose ? "close(output)" : "close"])
        #expect(try closing.readOutbound(as: ByteBuffer.self) == ByteBuffer(string: "QUIT\r\n"))
    }
}

/// Records flushes and closes in the order they reach the head of the pipeline.
final class OutboundOrder: ChannelOutboundHandler {
    typealias OutboundIn = Any
    var events: [String] = []
    func flush(context: ChannelHandlerContext) {
        events.append("flush")
        context.flush()
    }
    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        events.append(mode == .output ? "close(output)" : "close")
        context.close(mode: mode, promise: promise)
    }
}
