import NIOCore

/// In front of the client's glue for `starttls = "postgres"`: answers the client's
/// `SSLRequest`/`GSSENCRequest` with `N` (through `PostgresClientPreamble`), then passes the
/// client's bytes on to the glue, which holds them until the server is verified.
final class PostgresClientHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private var preamble = PostgresClientPreamble()
    private var context: ChannelHandlerContext?
    /// The gateway's refusal (an ErrorResponse), held until the client has sent its startup
    /// message: libpq reads an answer to its SSLRequest as one byte, `N` or `S`, and shows
    /// nothing of an error sent in its place ("server sent an error response during SSL
    /// exchange"). So the SSLRequest still gets its `N`, the startup message the error.
    private var refusal: (ByteBuffer, EventLoopPromise<Void>)?
    /// How long a held refusal waits for the startup message before it goes anyway.
    static let refusalWait = TimeAmount.seconds(2)

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if context.channel.isActive { context.read() }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        if let (_, promise) = refusal {
            refusal = nil
            promise.fail(ChannelError.ioOnClosedChannel)
        }
    }

    /// Writes the gateway's refusal once the client has sent its startup message (at once if
    /// it has, or after `refusalWait`); `promise` completes when it is written.
    func refuse(_ answer: ByteBuffer, promise: EventLoopPromise<Void>) {
        guard let context else {
            promise.fail(ChannelError.ioOnClosedChannel)
            return
        }
        refusal = (answer, promise)
        if preamble.done { return sendRefusal() }
        context.read()
        context.eventLoop.assumeIsolated().scheduleTask(in: Self.refusalWait) { [weak self] in self?.sendRefusal() }
    }

    private func sendRefusal() {
        guard let (answer, promise) = refusal, let context else { return }
        refusal = nil
        context.writeAndFlush(wrapOutboundOut(answer), promise: promise)
    }

    func channelActive(context: ChannelHandlerContext) {
        context.read()
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // Once the startup message went on, everything passes untouched (no copy).
        guard !preamble.done else {
            context.fireChannelRead(data)
            return
        }
        let buffer = unwrapInboundIn(data)
        switch preamble.receive(Array(buffer.readableBytesView)) {
        case .needMore:
            context.read()
        case .answer(let bytes):
            var out = context.channel.allocator.buffer(capacity: bytes.count)
            out.writeBytes(bytes)
            context.writeAndFlush(wrapOutboundOut(out), promise: nil)
            context.read()
        case .pass(let bytes):
            // Refused already: the startup message is what the refusal waited for.
            guard refusal == nil else { return sendRefusal() }
            guard !bytes.isEmpty else { return }
            var out = context.channel.allocator.buffer(capacity: bytes.count)
            out.writeBytes(bytes)
            context.fireChannelRead(wrapInboundOut(out))
        }
    }
}
