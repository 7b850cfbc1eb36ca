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
    private let ehloName: String?
    private var upgrade: StartTLSUpgrade
    private let makeTLSHandler: () -> ChannelHandler
    private let onUpgraded: ([String]) -> Void
    private let onRefused: (String, [String]) -> Void
    private let onGreetClient: (([UInt8]) -> Void)?
    private var context: ChannelHandlerContext?
    private var started = false
    private var finished = false

    /// - Parameters:
    ///   - makeTLSHandler: the TLS client handler, added when the exchange is over.
    ///   - onUpgraded: the exchange succeeded (with its transcript); the handshake begins.
    ///   - onRefused: why the server cannot be upgraded (with the transcript so far).
    ///   - onGreetClient: MySQL: give the client this greeting; its answer comes back through
    ///     `clientAnswered`. nil (`probe`, no client): a stock answer is used.
    public init(
        _ proto: StartTLSProtocol, makeTLSHandler: @escaping () -> ChannelHandler,
        onUpgraded: @escaping ([String]) -> Void, onRefused: @escaping (String, [String]) -> Void,
        onGreetClient: (([UInt8]) -> Void)? = nil, ehloName: String? = nil
    ) {
        self.proto = proto
        self.ehloName = ehloName
        self.onGreetClient = onGreetClient
        self.upgrade = StartTLSUpgrade(proto, ehloName: "[127.0.0.1]")
        self.makeTLSHandler = makeTLSHandler
        self.onUpgraded = onUpgraded
        self.onRefused = onRefused
    }

    public func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if context.channel.isActive { begin(context: context) }
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    /// MySQL: the client's handshake response to the greeting given through `onGreetClient`.
    public func clientAnswered(_ response: [UInt8]) {
        guard let context, !finished else { return }
        act(upgrade.clientAnswered(response), context: context)
    }

    public func channelActive(context: ChannelHandlerContext) {
        begin(context: context)
        context.fireChannelActive()
    }

    private func begin(context: ChannelHandlerContext) {
        guard !started else { return }
        started = true
        // SMTP's EHLO names the gateway: `ehlo_name`, else its address towards the server, known now.
        upgrade = StartTLSUpgrade(proto, ehloName: ehloName ?? Self.addressLiteral(context.channel.localAddress))
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
        case .greetClient(let greeting):
            guard let onGreetClient else {
                act(upgrade.clientAnswered(MySQLUpgrade.probeResponse), context: context)
                return
            }
            onGreetClient(greeting)
            // Nothing more may come from the server now; a read shows it (and a close).
            context.read()
        case .sendThenStartTLS(let bytes):
            var buffer = context.channel.allocator.buffer(capacity: bytes.count)
            buffer.writeBytes(bytes)
            context.writeAndFlush(NIOAny(buffer), promise: nil)
            act(.startTLS, context: context)
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
