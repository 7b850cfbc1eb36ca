import NIOCore

/// In front of the client's glue for `server_name = "http-host"` policies: shows the
/// request head to the connection (the bytes still flow on to the glue, which holds them
/// for the server) until the connection no longer waits for it, then stops asking for more.
final class HostSniffHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    /// Bytes of the head as they come; false: the connection has what it needs.
    private let onBytes: (ByteBufferView) -> Bool
    /// The client stopped sending while the head was still awaited.
    private let onInputClosed: () -> Void
    private var done = false

    init(onBytes: @escaping (ByteBufferView) -> Bool, onInputClosed: @escaping () -> Void) {
        self.onBytes = onBytes
        self.onInputClosed = onInputClosed
    }

    // The connection is set up from the child channel initializer, usually before the
    // channel is active: a read asked for then is lost, so ask again once it is active.
    // Without this only a client that half-closed was ever read (NIO drains the socket on
    // FIN even with autoRead off), and every ordinary client timed out with 408.
    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { context.read() }
    }

    func channelActive(context: ChannelHandlerContext) {
        if !done { context.read() }
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if !done {
            done = !onBytes(unwrapInboundIn(data).readableBytesView)
        }
        context.fireChannelRead(data)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if !done { context.read() }
        context.fireChannelReadComplete()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if !done, let event = event as? ChannelEvent, event == .inputClosed {
            done = true
            onInputClosed()
        }
        context.fireUserInboundEventTriggered(event)
    }
}
