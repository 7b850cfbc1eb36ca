import NIOCore
import TLSGateTLS

/// One end of the relay: sits last in a channel's pipeline and hands what it reads to its
/// partner on the other channel.
///
/// Back-pressure: a read is only passed down when the partner's channel is writable, so a
/// slow side makes the fast side stop reading (and TCP push back) instead of the gateway
/// buffering without bound. Both channels live on the same event loop.
final class GlueHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let side: RelayStateMachine.Side
    private let events: RelayEvents
    /// Where a read's flush of the partner is queued until the end of the tick; nil:
    /// flushed at once (tests with an embedded channel).
    private let flusher: TickFlusher?
    /// Queued in `flusher` and not flushed since.
    private var flushQueued = false
    private(set) var partner: GlueHandler?
    private var context: ChannelHandlerContext?
    private var pendingRead = false
    /// What arrived before the partner existed. Even with autoRead off, NIO drains the
    /// socket when it sees the peer's FIN, so a short request and its half-close can
    /// come before the upstream is verified; they are held here and replayed.
    private var early: [NIOAny] = []
    private var earlyInputClosed = false
    /// The first bytes from this side have been shown to `events.admitFirstBytes`.
    private var firstBytesAdmitted = false

    init(side: RelayStateMachine.Side, events: RelayEvents, flusher: TickFlusher? = nil) {
        self.side = side
        self.events = events
        self.flusher = flusher
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if side == .client, context.channel.isActive { context.read() }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        self.partner = nil
        self.early.removeAll()
    }

    /// Pairs two glue handlers; each then replays what it held back.
    static func join(_ a: GlueHandler, _ b: GlueHandler) {
        a.partner = b
        b.partner = a
        a.replayEarly()
        b.replayEarly()
    }

    /// Forgets the partner (at the end of the connection, to break the cycle).
    func unlink() {
        partner = nil
        early.removeAll()
    }

    private func replayEarly() {
        guard let partner else { return }
        let held = early
        early.removeAll()
        for data in held {
            guard admit(data) else { return }
            events.transferred(from: side, bytes: unwrapInboundIn(data).readableBytes)
            partner.partnerWrite(data)
        }
        if !held.isEmpty { partner.partnerFlush() }
        if earlyInputClosed {
            earlyInputClosed = false
            events.inputClosed(side)
        }
    }

    // MARK: called by the partner

    private func partnerWrite(_ data: NIOAny) {
        context?.write(data, promise: nil)
    }

    private func partnerFlush() {
        flushQueued = false
        context?.flush()
    }

    /// The partner read a burst: flush now, or at the end of the tick with a flusher.
    private func partnerFlushAfterRead() {
        guard let flusher else {
            partnerFlush()
            return
        }
        guard !flushQueued, context != nil else { return }
        flushQueued = true
        flusher.enqueue(self)
    }

    /// The end of the tick (`TickFlusher`); nothing if flushed at once since.
    func tickFlush() {
        guard flushQueued else { return }
        partnerFlush()
    }

    private var partnerWritable: Bool {
        context?.channel.isWritable ?? false
    }

    private func partnerBecameWritable() {
        if pendingRead, let context {
            pendingRead = false
            context.read()
        }
    }

    /// Ends the direction towards this handler's channel (FIN, or close_notify + FIN) once
    /// everything queued for it has been written.
    func shutdownOutput(promise: EventLoopPromise<Void>? = nil) {
        guard let context else {
            promise?.succeed(())
            return
        }
        if flushQueued { partnerFlush() }  // what a read queued goes out before the FIN
        context.close(mode: .output, promise: promise)
    }

    /// Completes `promise` once everything queued for this handler's channel so far has
    /// been written (an empty write queues behind it). Needed because after the peer's
    /// FIN, NIO turns a half-close into a full close that would drop queued writes.
    func afterQueuedWrites(promise: EventLoopPromise<Void>) {
        guard let context else {
            promise.succeed(())
            return
        }
        context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(capacity: 0)), promise: promise)
    }

    /// Shows the first bytes to the connection once; false: drop them and stop.
    private func admit(_ data: NIOAny) -> Bool {
        if firstBytesAdmitted { return true }
        let buffer = unwrapInboundIn(data)
        guard buffer.readableBytes > 0 else { return true }
        firstBytesAdmitted = true
        if events.admitFirstBytes(from: side, buffer) { return true }
        early.removeAll()
        earlyInputClosed = false
        partner = nil
        return false
    }

    // MARK: inbound

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let partner else {
            // Shown at once, so a client that speaks TLS is refused before any upstream
            // handshake; the bytes are only held, never sent before the server is verified.
            guard admit(data) else { return }
            early.append(data)
            return
        }
        guard admit(data) else { return }
        events.transferred(from: side, bytes: unwrapInboundIn(data).readableBytes)
        partner.partnerWrite(data)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        partner?.partnerFlushAfterRead()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            partner?.partnerBecameWritable()
        }
        context.fireChannelWritabilityChanged()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, event == .inputClosed {
            guard let partner else {
                earlyInputClosed = true
                return
            }
            partner.partnerFlush()
            events.inputClosed(side)
        } else if let event = event as? TLSClientEvent, case .handshakeCompleted(let info) = event {
            events.handshakeCompleted(info)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        events.failed(side, error)
    }

    /// The client side reads once as soon as the connection is up (autoRead stays off): a
    /// client that opens with a TLS ClientHello is then refused before the gateway does any
    /// upstream work. At most one read's worth is held until the server is verified.
    func channelActive(context: ChannelHandlerContext) {
        if side == .client, partner == nil { context.read() }
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        events.closed(side)
        context.fireChannelInactive()
    }

    // MARK: outbound

    /// A close (the relay's, or a reset) first sends what a read of this tick queued: the
    /// bytes before a server's truncation or error reach the client as they did when every
    /// read flushed at once (a MySQL ERR packet before the server drops the connection).
    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        if flushQueued { partnerFlush() }
        context.close(mode: mode, promise: promise)
    }

    func read(context: ChannelHandlerContext) {
        if let partner, !partner.partnerWritable {
            pendingRead = true
        } else {
            context.read()
        }
    }
}

/// What the glue tells the connection it belongs to. All calls on the connection's event loop.
protocol RelayEvents: AnyObject {
    /// The first bytes one side sends; false refuses the connection.
    func admitFirstBytes(from side: RelayStateMachine.Side, _ buffer: ByteBuffer) -> Bool
    func transferred(from side: RelayStateMachine.Side, bytes: Int)
    func inputClosed(_ side: RelayStateMachine.Side)
    func handshakeCompleted(_ info: TLSHandshakeInfo)
    func failed(_ side: RelayStateMachine.Side, _ error: Error)
    func closed(_ side: RelayStateMachine.Side)
}
