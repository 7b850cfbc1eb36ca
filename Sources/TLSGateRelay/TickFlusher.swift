import NIOCore

/// Coalesces the relay's flushes to the end of the event-loop tick.
///
/// A read on one side used to flush the other side's socket at once, so each `write(2)`
/// came between two reads and decryptions and woke the peer (nginx, the client) for a
/// single message. Queued here, the writes of one tick go out back to back after all the
/// tick's reads: the peers find several sockets ready when they wake. Same tick, so no
/// added latency: NIO runs `execute` tasks right after the I/O events of the iteration.
///
/// One per event loop, used only on it (hence `@unchecked Sendable`). Immediate flushes
/// (before a half-close, a close or a held write's promise) do not go through here.
final class TickFlusher: @unchecked Sendable {
    private let eventLoop: EventLoop
    private var pending: [GlueHandler] = []
    private var running: [GlueHandler] = []
    private var scheduled = false

    init(eventLoop: EventLoop) {
        self.eventLoop = eventLoop
    }

    /// Flushes `glue`'s channel at the end of this tick (once, however often it is queued).
    func enqueue(_ glue: GlueHandler) {
        pending.append(glue)
        guard !scheduled else { return }
        scheduled = true
        eventLoop.execute { self.flushAll() }
    }

    private func flushAll() {
        scheduled = false
        // A flush that queues another (it should not) lands in `pending` and a new task.
        swap(&pending, &running)
        for glue in running { glue.tickFlush() }
        running.removeAll(keepingCapacity: true)
    }
}
