import NIOCore

/// In front of the client's glue for `starttls = "postgres"`: answers the client's
/// `SSLRequest`/`GSSENCRequest` with `N` (through `PostgresClientPreamble`), then passes the
/// client's bytes on to the glue, which holds them until the server is verified.
final class PostgresClientHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private var preamble = PostgresClientPreamble()

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { context.read() }
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
            guard !bytes.isEmpty else { return }
            var out = context.channel.allocator.buffer(capacity: bytes.count)
            out.writeBytes(bytes)
            context.fireChannelRead(wrapInboundOut(out))
        }
    }
}
