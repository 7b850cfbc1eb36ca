import NIOCore

/// In front of the client's glue for `server_name = "http-host"` policies: reads the
/// request head (the bytes still flow on to the glue, which holds them for the server)
/// until the sniffer has an answer, then stops asking for more.
final class HostSniffHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private var sniffer: HTTPHostSniffer
    private let onResult: (HTTPHostSniffer.Result) -> Void
    private var done = false

    init(maxBytes: Int, onResult: @escaping (HTTPHostSniffer.Result) -> Void) {
        self.sniffer = HTTPHostSniffer(maxBytes: maxBytes)
        self.onResult = onResult
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
            let result = sniffer.feed(unwrapInboundIn(data).readableBytesView)
            if result != .needMore {
                done = true
                onResult(result)
            }
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
            onResult(.bad("the client closed before sending a whole request head"))
        }
        context.fireUserInboundEventTriggered(event)
    }
}
