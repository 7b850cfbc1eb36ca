import NIOCore

/// In the upstream pipeline of `starttls = "mysql"`, between the TLS handler and the glue:
/// renumbers the server's authentication packets for the client (`MySQLServerAuth`) until
/// its OK or ERR, then passes bytes untouched. It sees only what came inside TLS. What they
/// asked for (full authentication, an auth switch's scramble) goes to the client side first.
final class MySQLServerAuthHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private let session: MySQLSession
    private var auth = MySQLServerAuth()

    init(session: MySQLSession) {
        self.session = session
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !auth.ended else {
            context.fireChannelRead(data)
            return
        }
        let buffer = unwrapInboundIn(data)
        switch auth.receive(Array(buffer.readableBytesView), lead: session.lead) {
        case .refuse(let why):
            session.serverRefused(why)
        case .pass(let bytes, let sequences, let ended):
            // The client side learns the numbers (and the end) before the client sees them.
            session.serverSent(
                sequences: sequences, ended: ended, fullAuthentication: auth.fullAuthenticationRequested,
                switchScramble: auth.switchScramble)
            if bytes.isEmpty {
                // A partial packet: the glue asks for reads only when it passes data on.
                context.read()
                return
            }
            var out = context.channel.allocator.buffer(capacity: bytes.count)
            out.writeBytes(bytes)
            context.fireChannelRead(wrapInboundOut(out))
        }
    }
}
