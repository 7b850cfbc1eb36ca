import NIOCore

/// Events `TLSClientHandler` sends up the pipeline.
public enum TLSClientEvent: Sendable, Equatable {
    /// The server's certificate was verified and the handshake finished.
    case handshakeCompleted(TLSHandshakeInfo)
}

/// A TLS client on a NIO channel, over the system OpenSSL.
///
/// Inbound: ciphertext from the socket in, plaintext out. Outbound: plaintext in,
/// ciphertext out. Plaintext is delivered only after the handshake — and so the
/// certificate check — succeeded. The server's close_notify arrives as
/// `ChannelEvent.inputClosed`; `close(mode: .output)` sends close_notify and half-closes
/// TCP. Errors arrive as `TLSError` through `errorCaught`, after which the channel closes.
///
/// The channel must allow remote half-closure, so that a TCP FIN can be told apart from
/// close_notify.
public final class TLSClientHandler: ChannelDuplexHandler, RemovableChannelHandler {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = ByteBuffer
    public typealias OutboundIn = ByteBuffer
    public typealias OutboundOut = ByteBuffer

    /// Upper bound of plaintext delivered in one channelRead.
    static let maxPlaintextChunk = 256 * 1024
    /// The least room given to one SSL_read. The plaintext buffer is sized up front from the
    /// ciphertext at hand (so a full 16 KiB record is read in one call) and let go at the
    /// end of each read burst: an idle connection holds no plaintext buffer.
    static let readSize = 4 * 1024
    /// TLS record overhead reserved per 16 KiB of plaintext when encrypting (header, tag,
    /// TLS 1.3 content type, CBC padding and MAC for TLS 1.2 suites).
    static let recordOverhead = 64

    private let tlsContext: TLSContext
    private let identity: TLSPeerIdentity
    private let sessionKey: String
    private let reportsPeerChain: Bool
    private(set) var connection: TLSConnection?
    private var machine = TLSClientStateMachine()
    private var plaintext = ByteBuffer()
    private var pendingWrites: [(ByteBuffer, EventLoopPromise<Void>?)] = []
    private var firedRead = false
    /// The server has sent application data (so a later error is not about the handshake).
    private var receivedApplicationData = false
    private var writePromises: [EventLoopPromise<Void>] = []

    /// - Parameters:
    ///   - identity: the name (sent as SNI) or address the certificate must match.
    ///   - sessionKey: connections with the same key share resumable sessions; include
    ///     the server address, port and identity.
    ///   - reportsPeerChain: summarise the server's chain in `TLSHandshakeInfo.peerChain`
    ///     (`tlsgate probe`); off, it stays empty and the handshake costs less.
    public init(context: TLSContext, identity: TLSPeerIdentity, sessionKey: String, reportsPeerChain: Bool = false) {
        self.tlsContext = context
        self.identity = identity
        self.sessionKey = sessionKey
        self.reportsPeerChain = reportsPeerChain
    }

    public func handlerAdded(context: ChannelHandlerContext) {
        plaintext = context.channel.allocator.buffer(capacity: 0)
        do {
            connection = try TLSConnection(
                context: tlsContext, identity: identity, sessionKey: sessionKey,
                allocator: context.channel.allocator)
        } catch {
            fail(context: context, error: error)
            return
        }
        if context.channel.isActive { activate(context: context) }
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        let error = ChannelError.ioOnClosedChannel
        for (_, promise) in pendingWrites { promise?.fail(error) }
        pendingWrites.removeAll()
        for promise in writePromises { promise.fail(error) }
        writePromises.removeAll()
        connection?.bio.releaseBuffers(allocator: context.channel.allocator)
        connection = nil
    }

    public func channelActive(context: ChannelHandlerContext) {
        activate(context: context)
        context.fireChannelActive()
    }

    private func activate(context: ChannelHandlerContext) {
        guard machine.activate() == .startHandshake else { return }
        continueHandshake(context: context)
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let connection else { return }
        var buffer = unwrapInboundIn(data)
        switch machine.inbound() {
        case .continueHandshake:
            connection.bio.withInbound(&buffer) { continueHandshake(context: context) }
        case .decrypt:
            // Plaintext is never longer than the ciphertext it comes from: one allocation.
            let room = min(Self.maxPlaintextChunk, buffer.readableBytes + connection.bio.bufferedInboundBytes)
            if plaintext.readableBytes == 0 {
                // A fresh buffer rather than clearing one the socket may still be writing
                // from (that would copy it).
                plaintext = context.channel.allocator.buffer(capacity: max(room, Self.readSize))
            }
            connection.bio.withInbound(&buffer) { readPlaintext(context: context) }
        case .discard:
            // After close_notify or a failure nothing more is read: drop the bytes (and any
            // tail kept from before) instead of stashing them without limit.
            connection.bio.discardInbound()
        }
        // Bytes that followed the close_notify in the same read are not kept either.
        if machine.inbound() == .discard { connection.bio.discardInbound() }
    }

    public func channelReadComplete(context: ChannelHandlerContext) {
        flushOutbound(context: context)
        // The burst is over: its plaintext went up the pipeline; keep no buffer while idle.
        if plaintext.readableBytes == 0 && plaintext.capacity > 0 { plaintext = ByteBuffer() }
        // Nor OpenSSL's record buffers (after the handshake: its flights are short-lived).
        if case .active = machine.state { connection?.releaseIdleBuffers() }
        if firedRead {
            firedRead = false
            context.fireChannelReadComplete()
        }
    }

    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard let channelEvent = event as? ChannelEvent, channelEvent == .inputClosed else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        connection?.bio.peerClosed = true
        // Let OpenSSL see the EOF: a close_notify may still sit in the buffered bytes.
        if case .active(inputClosed: false, _) = machine.state { readPlaintext(context: context) }
        switch machine.transportEOF() {
        case .failClosedDuringHandshake:
            fail(
                context: context,
                error: TLSError(kind: .closedDuringHandshake, context: "server closed the connection during the handshake"))
        case .failUncleanShutdown:
            fail(context: context, error: TLSError(kind: .uncleanShutdown, context: "server closed TCP without close_notify"))
        case .none:
            break
        }
    }

    // MARK: outbound

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let buffer = unwrapOutboundIn(data)
        switch machine.write() {
        case .buffer:
            pendingWrites.append((buffer, promise))
        case .encrypt:
            encrypt(context: context, buffer, promise: promise)
        case .fail:
            promise?.fail(ChannelError.outputClosed)
        }
    }

    /// Before the handshake completes there is nothing to flush: the writes wait, and go
    /// out with the handshake's last flight.
    public func flush(context: ChannelHandlerContext) {
        if case .active = machine.state { flushOutbound(context: context) }
    }

    public func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        switch mode {
        case .output:
            switch machine.closeOutput() {
            case .sendCloseNotifyAndShutdownOutput:
                connection?.shutdown()
                flushOutbound(context: context)
                context.close(mode: .output, promise: promise)
            case .closeAll:
                context.close(mode: .all, promise: promise)
            case .none:
                promise?.succeed(())
            }
        case .input:
            context.close(mode: .input, promise: promise)
        case .all:
            if machine.close() == .sendCloseNotifyThenClose {
                connection?.shutdown()
                flushOutbound(context: context)
            }
            context.close(mode: .all, promise: promise)
        }
    }

    // MARK: driving OpenSSL

    private func continueHandshake(context: ChannelHandlerContext) {
        guard let connection else { return }
        switch connection.handshake() {
        case .wantRead:
            flushOutbound(context: context)
        case .failed(let error):
            flushOutbound(context: context)  // carries the alert to the server
            fail(context: context, error: error)
        case .complete:
            let info = connection.handshakeInfo(includingChain: reportsPeerChain)
            if tlsContext.configuration.alpnRequired && info.alpn == nil {
                flushOutbound(context: context)
                fail(context: context, error: TLSError(
                    kind: .handshakeFailed,
                    context: "the server selected none of the ALPN protocols \(tlsContext.configuration.alpn.joined(separator: ", ")) (alpn_required)"))
                return
            }
            guard machine.handshakeCompleted() == .fireCompletedAndFlushPending else {
                flushOutbound(context: context)
                return
            }
            // The last handshake flight (the client's Finished) waits in the BIO for what the
            // pipeline writes on hearing of the handshake (the relay replays the client's
            // first bytes): one write and one TCP segment carry both, not two.
            context.fireUserInboundEventTriggered(TLSClientEvent.handshakeCompleted(info))
            let writes = pendingWrites
            pendingWrites.removeAll()
            for (buffer, promise) in writes { encrypt(context: context, buffer, promise: promise) }
            flushOutbound(context: context)
            // Application data may have arrived with the last handshake flight.
            if connection.bio.hasBufferedInbound { readPlaintext(context: context) }
        }
    }

    private func readPlaintext(context: ChannelHandlerContext) {
        guard let connection else { return }
        if plaintext.readableBytes == 0 { plaintext.clear() }  // reuses storage once the peer wrote it
        var outcome: TLSConnection.ReadResult = .wantRead
        while true {
            var result: TLSConnection.ReadResult = .wantRead
            // Whatever room is left (sized from the ciphertext in channelRead); grows only
            // when it is used up.
            let room = plaintext.writableBytes > 0 ? plaintext.writableBytes : Self.readSize
            plaintext.writeWithUnsafeMutableBytes(minimumWritableBytes: room) { pointer in
                result = connection.read(into: pointer)
                if case .bytes(let n) = result { return n }
                return 0
            }
            if case .bytes = result {
                if plaintext.readableBytes >= Self.maxPlaintextChunk { deliverPlaintext(context: context) }
                // Nothing left to decrypt: another SSL_read would only answer "want read",
                // after setting up OpenSSL's 16.7 KiB read buffer again (kept while idle).
                // After the peer's FIN it goes on, so that OpenSSL reports the EOF.
                if !connection.bio.peerClosed && !connection.hasPendingInput { break }
                continue
            }
            outcome = result
            break
        }
        deliverPlaintext(context: context)
        switch outcome {
        case .closeNotify:
            if machine.closeNotifyReceived() == .fireInputClosed {
                flushOutbound(context: context)
                context.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
            }
        case .failed(let error) where error.kind == .protocolError && !receivedApplicationData:
            // TLS 1.3: the client's Finished ends its handshake before the server has checked
            // the client's certificate; a refusal arrives as an alert right after. Before any
            // application data, that is a handshake failure, not a broken stream.
            fail(context: context, error: TLSError(
                kind: .handshakeFailed, reasons: error.reasons, context: "the server refused the handshake after it completed",
                peerCertificate: error.peerCertificate))
        case .failed(let error):
            fail(context: context, error: error)
        case .wantRead, .bytes:
            break
        }
    }

    private func deliverPlaintext(context: ChannelHandlerContext) {
        guard plaintext.readableBytes > 0 else { return }
        receivedApplicationData = true
        let chunk = plaintext
        plaintext.moveReaderIndex(to: plaintext.writerIndex)
        firedRead = true
        context.fireChannelRead(wrapInboundOut(chunk))
    }

    private func encrypt(context: ChannelHandlerContext, _ buffer: ByteBuffer, promise: EventLoopPromise<Void>?) {
        guard let connection else {
            promise?.fail(ChannelError.ioOnClosedChannel)
            return
        }
        let size = buffer.readableBytes
        connection.bio.reserveOutbound(size + (size / 16384 + 1) * Self.recordOverhead)
        let error = buffer.withUnsafeReadableBytes { connection.write($0) }
        if let error {
            promise?.fail(error)
            fail(context: context, error: error)
            return
        }
        if let promise { writePromises.append(promise) }
    }

    /// Hands the ciphertext produced so far to the socket, completing the plaintext
    /// writes' promises when it is written. Promises of writes that produced no bytes
    /// still complete in order, behind everything queued before them.
    private func flushOutbound(context: ChannelHandlerContext) {
        guard let connection else { return }
        let data = connection.bio.takeOutbound()
        guard data != nil || !writePromises.isEmpty else { return }
        let promise: EventLoopPromise<Void>?
        switch writePromises.count {
        case 0: promise = nil
        case 1: promise = writePromises[0]
        default:
            let combined = context.eventLoop.makePromise(of: Void.self)
            let waiting = writePromises
            combined.futureResult.whenComplete { result in
                for p in waiting { p.completeWith(result) }
            }
            promise = combined
        }
        writePromises.removeAll(keepingCapacity: true)
        context.write(wrapOutboundOut(data ?? context.channel.allocator.buffer(capacity: 0)), promise: promise)
        context.flush()
    }

    private func fail(context: ChannelHandlerContext, error: TLSError) {
        guard machine.failed() == .fireErrorAndClose else { return }
        for (_, promise) in pendingWrites { promise?.fail(error) }
        pendingWrites.removeAll()
        context.fireErrorCaught(error)
        context.close(promise: nil)
    }
}
