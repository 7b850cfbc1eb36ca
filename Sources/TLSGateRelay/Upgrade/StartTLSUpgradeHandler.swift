import NIOCore
import TLSGatePolicy

/// First in the upstream channel's pipeline of a `starttls` policy: speaks the plain-text
/// upgrade with the server through a `StartTLSUpgrade` and, once it says `startTLS`, puts
/// the TLS handler in its place (which starts the handshake) and leaves. Nothing the server
/// sends before TLS goes further up the pipeline.
public final class StartTLSUpgradeHandler: ChannelInboundHandler, RemovableChannelHandler {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = ByteBuffer

    private let proto: StartTLSProtocol
    private var upgrade: StartTLSUpgrade
    private let makeTLSHandler: () -> ChannelHandler
    private let onUpgraded: ([String]) -> Void
    private let onRefused: (String, [String]) -> Void
    private var started = false
    private var finished = false

    /// - Parameters:
    ///   - makeTLSHandler: the TLS client handler, added when the exchange is over.
    ///   - onUpgraded: the exchange succeeded (with its transcript); the handshake begins.
    ///   - onRefused: why the server cannot be upgraded (with the transcript so far).
    public init(
        _ proto: StartTLSProtocol, makeTLSHandler: @escaping () -> ChannelHandler,
        onUpgraded: @escaping ([String]) -> Void, onRefused: @escaping (String, [String]) -> Void
    ) {
        self.proto = proto
        self.upgrade = StartTLSUpgrade(proto, ehloName: "[127.0.0.1]")
        self.makeTLSHandler = makeTLSHandler
        self.onUpgraded = onUpgraded
        self.onRefused = onRefused
    }

    public func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { begin(context: context) }
    }

    public func channelActive(context: ChannelHandlerContext) {
        begin(context: context)
        context.fireChannelActive()
    }

    private func begin(context: ChannelHandlerContext) {
        guard !started else { return }
        started = true
        // SMTP's EHLO names the gateway by its address towards the server, known now.
        upgrade = StartTLSUpgrade(proto, ehloName: Self.addressLiteral(context.channel.localAddress))
        act(upgrade.start(), context: context)
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !finished else { return }  // after a refusal: dropped, never passed on
        let buffer = unwrapInboundIn(data)
        act(upgrade.receive(Array(buffer.readableBytesView)), context: context)
    }

    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, event == .inputClosed {
            refuse("the server closed the connection during the \(upgrade.proto.displayName) upgrade")
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    public func channelInactive(context: ChannelHandlerContext) {
        refuse("the server closed the connection during the \(upgrade.proto.displayName) upgrade")
        context.fireChannelInactive()
    }

    private func act(_ action: UpgradeAction, context: ChannelHandlerContext) {
        switch action {
        case .needMore:
            if !context.channel.isActive { return }
            context.read()
        case .send(let bytes):
            var buffer = context.channel.allocator.buffer(capacity: bytes.count)
            buffer.writeBytes(bytes)
            context.writeAndFlush(NIOAny(buffer), promise: nil)
            context.read()
        case .refuse(let why):
            refuse(why)
        case .startTLS:
            finished = true
            do {
                try context.pipeline.syncOperations.addHandler(makeTLSHandler(), position: .after(self))
            } catch {
                onRefused("cannot start TLS: \(error)", upgrade.transcript)
                return
            }
            onUpgraded(upgrade.transcript)
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        }
    }

    private func refuse(_ why: String) {
        guard !finished else { return }
        finished = true
        onRefused(why, upgrade.transcript)
    }

    /// An SMTP address literal (RFC 5321 §4.1.3): `[198.19.0.1]`, `[IPv6:2001:2::1]`.
    static func addressLiteral(_ address: SocketAddress?) -> String {
        guard let ip = address?.ipAddress, let parsed = IPAddress(ip) else { return "[127.0.0.1]" }
        let plain = parsed.unmapped
        return plain.isIPv4 ? "[\(plain)]" : "[IPv6:\(plain)]"
    }
}
