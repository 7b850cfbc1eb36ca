import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix

/// The supervisor's HTTP endpoint (`[admin] listen`): `GET /metrics` (Prometheus text) and
/// `GET /healthz` (200 `ok`, or 503 naming what is not ready). HTTP/1.1, one request per
/// connection, GET only, no request body, a request head within `requestTimeout`, at most
/// `maximumConnections` at once: a scraper's endpoint, not a web server.
public final class AdminServer: Sendable {
    /// The Prometheus text exposition of every metric.
    public typealias Render = @Sendable () -> [UInt8]
    /// Calls back (on any thread) with what is not ready; empty when ready.
    public typealias Health = @Sendable (@escaping @Sendable ([String]) -> Void) -> Void

    static let requestTimeout = TimeAmount.seconds(5)
    static let maximumConnections = 32

    private let group: MultiThreadedEventLoopGroup
    private let channel: Channel

    /// Binds `host:port` and serves until `close()`.
    public init(host: String, port: Int, render: @escaping Render, health: @escaping Health) throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let open = NIOLockedValueBox(0)
        do {
            channel = try ServerBootstrap(group: group)
                .serverChannelOption(.backlog, value: 64)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelInitializer { channel in
                    let admitted = open.withLockedValue { count -> Bool in
                        guard count < Self.maximumConnections else { return false }
                        count += 1
                        return true
                    }
                    guard admitted else { return channel.close() }
                    channel.closeFuture.whenComplete { _ in open.withLockedValue { $0 -= 1 } }
                    return channel.eventLoop.makeCompletedFuture {
                        let sync = channel.pipeline.syncOperations
                        try sync.addHandler(IdleStateHandler(readTimeout: Self.requestTimeout))
                        try sync.configureHTTPServerPipeline(withPipeliningAssistance: false, withErrorHandling: true)
                        try sync.addHandler(AdminHandler(render: render, health: health))
                    }
                }
                .bind(host: host, port: port).wait()
        } catch {
            try? group.syncShutdownGracefully()
            throw error
        }
        self.group = group
    }

    /// The port bound (the one asked for, or the kernel's pick for 0).
    public var port: Int? { channel.localAddress?.port }

    public func close() {
        try? channel.close().wait()
        try? group.syncShutdownGracefully()
    }
}

/// One request: route, answer, close.
final class AdminHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let render: AdminServer.Render
    private let health: AdminServer.Health
    private var head: HTTPRequestHead?
    private var answered = false

    init(render: @escaping AdminServer.Render, health: @escaping AdminServer.Health) {
        self.render = render
        self.health = health
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let request):
            head = request
        case .body:
            // A GET carries no body: refuse rather than read one.
            respond(context, .badRequest, "a request body is not accepted\n")
        case .end:
            guard let head, !answered else { return }
            guard head.method == .GET else {
                respond(context, .methodNotAllowed, "only GET\n", extra: [("Allow", "GET")])
                return
            }
            let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? head.uri
            switch path {
            case "/metrics":
                respond(context, .ok, render(), type: "text/plain; version=0.0.4; charset=utf-8")
            case "/healthz":
                let loop = NIOLoopBound((self, context), eventLoop: context.eventLoop)
                let eventLoop = context.eventLoop
                health { problems in
                    eventLoop.execute {
                        let (handler, context) = loop.value
                        if problems.isEmpty {
                            handler.respond(context, .ok, "ok\n")
                        } else {
                            handler.respond(context, .serviceUnavailable, problems.map { $0 + "\n" }.joined())
                        }
                    }
                }
            default:
                respond(context, .notFound, "not found: /metrics and /healthz only\n")
            }
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    private func respond(
        _ context: ChannelHandlerContext, _ status: HTTPResponseStatus, _ text: String, extra: [(String, String)] = []
    ) {
        respond(context, status, Array(text.utf8), type: "text/plain; charset=utf-8", extra: extra)
    }

    private func respond(
        _ context: ChannelHandlerContext, _ status: HTTPResponseStatus, _ body: [UInt8], type: String,
        extra: [(String, String)] = []
    ) {
        guard !answered, context.channel.isActive else { return }
        answered = true
        var headers = HTTPHeaders([("Content-Type", type), ("Content-Length", "\(body.count)"), ("Connection", "close")])
        headers.add(contentsOf: extra)
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
        var buffer = context.channel.allocator.buffer(capacity: body.count)
        buffer.writeBytes(body)
        context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in channel.close(promise: nil) }
    }
}
