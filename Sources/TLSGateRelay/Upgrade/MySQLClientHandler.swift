import NIOCore
import TLSGateTLS

/// First in the client's pipeline for `starttls = "mysql"`: writes the gateway's greeting,
/// reads the client's handshake response and renumbers its authentication packets (through
/// `MySQLSession`), answering caching_sha2_password's public key request itself; then
/// passes bytes untouched. What it passes on goes to the glue, which
/// holds it until the server is verified.
final class MySQLClientHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let session: MySQLSession
    private var context: ChannelHandlerContext?
    private var relaying = false

    init(session: MySQLSession) {
        self.session = session
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        session.clientHandler = self
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        session.clientHandler = nil
    }

    /// The gateway's greeting: written, then the client's answer is read.
    func write(_ bytes: [UInt8]) {
        guard let context else { return }
        var out = context.channel.allocator.buffer(capacity: bytes.count)
        out.writeBytes(bytes)
        context.writeAndFlush(wrapOutboundOut(out), promise: nil)
        context.read()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // After authentication everything passes untouched (no copy).
        guard !relaying else {
            if session.watchesQuit { session.quitWatch.scan(unwrapInboundIn(data).readableBytesView) }
            context.fireChannelRead(data)
            return
        }
        let buffer = unwrapInboundIn(data)
        switch session.clientSent(Array(buffer.readableBytesView)) {
        case .needMore:
            context.read()
        case .answered(_, let held):
            // Held by the glue until the server is verified; the client now waits for it.
            forward(held, context: context)
        case .pass(let bytes):
            relaying = session.client.isRelaying
            if relaying, session.watchesQuit { session.quitWatch.scan(bytes) }
            forward(bytes, context: context)
        case .reply(let toClient, let toServer):
            // The gateway's own answer (its public key); the server waits meanwhile.
            var out = context.channel.allocator.buffer(capacity: toClient.count)
            out.writeBytes(toClient)
            context.writeAndFlush(wrapOutboundOut(out), promise: nil)
            forward(toServer, context: context)
        case .refuse:
            break
        }
        // The action is gone: if its bytes carried the clear password (caching_sha2 full
        // authentication), the session's copy is now the only one and is overwritten.
        if session.client.holdsSecret { session.wipeSecret() }
    }

    private func forward(_ bytes: [UInt8], context: ChannelHandlerContext) {
        guard !bytes.isEmpty else { return }
        var out = context.channel.allocator.buffer(capacity: bytes.count)
        out.writeBytes(bytes)
        context.fireChannelRead(wrapInboundOut(out))
        // The TLS handler has encrypted it (the relay is up during authentication), so this
        // buffer is ours alone again: overwrite it (it may hold the password).
        if session.client.holdsSecret { SecretBytes.wipe(&out) }
    }
}
