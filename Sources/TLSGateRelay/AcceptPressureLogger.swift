import Logging
import NIOCore

#if canImport(Glibc)
import Glibc
#endif

/// Back-pressure on accept: when accept fails for lack of descriptors or memory, the
/// listening channel stops reading for `pause` and then tries again, so the connections
/// wait in the kernel's queue instead of the worker spinning; it says so once, and once
/// more when accepting works again.
///
/// Why not NIO's `AcceptBackoffHandler`: after a failed accept the server channel keeps
/// its read pending and stays registered for readability, so the level-triggered epoll
/// wakes it at once and the back-off never takes effect (a measured busy loop of ~70k
/// failed accepts per second). Turning autoRead off unregisters the socket from epoll.
final class AcceptPressureLogger: ChannelInboundHandler {
    typealias InboundIn = Channel

    static let pause = TimeAmount.milliseconds(200)

    private let logger: Logger
    private var paused = false
    private var resumeScheduled = false
    private var failures = 0
    private var lastWarning: NIODeadline?
    /// This pause was reported, so its end is too.
    private var announced = false
    /// Repeated starvation is reported at most this often.
    static let warningInterval = TimeAmount.seconds(60)

    init(logger: Logger) {
        self.logger = logger
    }

    static func isResourceExhaustion(_ error: Error) -> Bool {
        guard let io = error as? IOError else { return false }
        return [EMFILE, ENFILE, ENOBUFS, ENOMEM].contains(io.errnoCode)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if paused {
            paused = false
            if announced {
                announced = false
                logger.notice("accepting again", metadata: ["failed_accepts": "\(failures)"])
            }
            failures = 0
        }
        context.fireChannelRead(data)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        guard Self.isResourceExhaustion(error) else {
            context.fireErrorCaught(error)
            return
        }
        failures += 1
        let now = NIODeadline.now()
        if !paused {
            paused = true
        }
        if !announced, lastWarning.map({ now - $0 >= Self.warningInterval }) ?? true {
            lastWarning = now
            announced = true
            logger.warning(
                "cannot accept: out of file descriptors or memory; accepting paused and retried every 200ms",
                metadata: ["error": "\(error)"])
        }
        guard !resumeScheduled else { return }
        resumeScheduled = true
        let channel = context.channel
        try? channel.syncOptions?.setOption(.autoRead, value: false)
        // On this channel's event loop: the handler is touched by no other thread.
        context.eventLoop.assumeIsolated().scheduleTask(in: Self.pause) {
            self.resumeScheduled = false
            try? channel.syncOptions?.setOption(.autoRead, value: true)
        }
    }
}
