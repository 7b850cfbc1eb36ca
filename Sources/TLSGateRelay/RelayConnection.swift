import Logging
import NIOCore
import NIOPosix
import TLSGatePolicy
import TLSGateSystem
import TLSGateTLS

#if canImport(Glibc)
import Glibc
#endif

/// One client connection: original destination → policy check → TLS to the server →
/// relay. Lives on the client channel's event loop; the upstream channel uses the same
/// loop, so no state here is shared across threads (hence `@unchecked Sendable`: every
/// callback that touches it runs on that one loop).
final class RelayConnection: RelayEvents, @unchecked Sendable {
    private let client: Channel
    private let shared: WorkerShared
    private var upstream: Channel?
    private var clientGlue: GlueHandler?
    private var upstreamGlue: GlueHandler?
    private var machine = RelayStateMachine()
    private let started = NIODeadline.now()
    private var lastActivity = NIODeadline.now()
    private var timer: Scheduled<Void>?
    private var bytesUp = 0
    private var bytesDown = 0
    private var tlsInfo: TLSHandshakeInfo?
    private var original: SocketAddress?
    private var upstreamAddress: SocketAddress?
    private var identity: TLSPeerIdentity?
    private var holdsSlot = false
    /// The upstream channel while its connect is pending (socket and SSL exist): it holds
    /// the connection's `max_connections` slot, and a client that goes away closes it.
    private var pendingUpstream: Channel?
    private var connectPending = false
    /// starttls: the plain-text exchange is over (the TLS handshake runs or ran).
    private var upgradeFinished = false
    /// starttls = "mysql": the two channels' shared protocol state.
    private var mysql: MySQLSession?
    private var clientClosed = false
    private var upstreamClosed = false
    private var logged = false
    private var resetClient = false
    private let clientAddress: SocketAddress?
    /// When the upstream connect began and when it finished (for the metrics' histograms).
    private var connectStarted: NIODeadline?
    private var upstreamUpAt: NIODeadline?

    init(client: Channel, shared: WorkerShared) {
        self.client = client
        self.shared = shared
        self.clientAddress = client.remoteAddress
    }

    private var eventLoop: EventLoop { client.eventLoop }

    func start() {
        shared.stats.accepted()
        client.closeFuture.whenComplete { _ in
            self.clientClosed = true
            self.finishIfDone()
        }
        guard shared.limiter.acquire() else {
            refuse(.maxConnections, "the policy's max_connections (\(shared.policy.limits.maxConnections)) is reached")
            return
        }
        holdsSlot = true
        // The client's glue is there from the start, to hold anything that arrives early.
        let glue = GlueHandler(side: .client, events: self)
        clientGlue = glue
        do {
            try client.pipeline.syncOperations.addHandler(glue)
        } catch {
            refuse(.clientError, "cannot set up the connection: \(error)")
            return
        }
        if shared.transparent {
            // TPROXY: no NAT happened; the socket's own local address is the destination.
            original = client.localAddress
            check()
            return
        }
        OriginalDestination.read(from: client).whenComplete { result in
            switch result {
            case .success(let address):
                self.original = address
            case .failure:
                self.original = nil
            }
            self.check()
        }
    }

    private func check() {
        let verdict = shared.destinationCheck().evaluate(
            original: original?.ipAddress, originalPort: original?.port ?? 0,
            socketLocal: shared.transparent ? nil : client.localAddress?.ipAddress,
            socketLocalPort: client.localAddress?.port ?? 0)
        switch verdict {
        case .allow:
            guard machine.checked(allowed: true) == .connect else { return }
            if case .httpHost = shared.policy.upstream.serverName {
                sniffHost()
            } else if shared.policy.upstream.starttls == .mysql {
                // The client gets the gateway's greeting; its answer is held, renumbered.
                let session = MySQLSession { reason, detail in self.refuseInProtocol(reason, detail) }
                mysql = session
                do {
                    try client.pipeline.syncOperations.addHandler(MySQLClientHandler(session: session), position: .first)
                } catch {
                    abort(.clientError, "cannot set up the connection: \(error)")
                    return
                }
                connect()
            } else if shared.policy.upstream.starttls == .postgres || shared.policy.upstream.starttls == .postgresDirect {
                // The client's SSLRequest is answered "N" here; its startup message is held.
                do {
                    try client.pipeline.syncOperations.addHandler(PostgresClientHandler(), position: .first)
                } catch {
                    abort(.clientError, "cannot set up the connection: \(error)")
                    return
                }
                connect()
            } else {
                connect()
            }
        case .refuse(let reason, let detail):
            _ = machine.checked(allowed: false)
            refuse(reason, detail)
        }
    }

    // MARK: http-host

    /// The name from the client's Host header, for `server_name = "http-host"`.
    private var requestedHost: String?

    private func sniffHost() {
        let upstream = shared.policy.upstream
        let sniffer = HostSniffHandler(maxBytes: upstream.maxHeaderBytes) { result in
            self.hostSniffed(result)
        }
        do {
            try client.pipeline.syncOperations.addHandler(sniffer, position: .first)
        } catch {
            abort(.clientError, "cannot read the request: \(error)")
            return
        }
        timer = eventLoop.scheduleTask(in: .milliseconds(upstream.hostHeaderTimeout.milliseconds)) {
            guard self.requestedHost == nil else { return }
            self.respond(408, "Request Timeout", "no whole request head within \(upstream.hostHeaderTimeout)")
            self.abort(.hostHeaderTimeout, "no whole request head within \(upstream.hostHeaderTimeout)")
        }
    }

    private func hostSniffed(_ result: HTTPHostSniffer.Result) {
        timer?.cancel()
        timer = nil
        switch result {
        case .needMore:
            return
        case .bad(HTTPHostSniffer.clientHello):
            abort(
                .clientSpeaksTLS,
                "the client sent a TLS ClientHello on plain port \(shared.policy.match.port): it already speaks TLS, and the gateway does not wrap TLS in TLS")
        case .bad(let why):
            respond(400, "Bad Request", why)
            abort(.badRequest, why)
        case .host(let host):
            guard HTTPHostSniffer.isAllowed(host, by: shared.policy.upstream.allowedNames) else {
                let why = "Host \"\(host)\" is not in the policy's allowed_names"
                respond(403, "Forbidden", why)
                abort(.hostNotAllowed, why)
                return
            }
            requestedHost = host
            connect()
        }
    }

    // MARK: answers to the client

    /// A plain-text HTTP answer the client gets before its connection closes.
    private var clientResponse: ByteBuffer?

    private func respond(_ status: Int, _ phrase: String, _ detail: String) {
        guard clientResponse == nil else { return }
        let body = """
            tlsgate did not relay this request.
            policy: \(shared.policy.name)
            reason: \(detail)

            """
        var page = client.allocator.buffer(capacity: 256 + body.utf8.count)
        page.writeString(
            "HTTP/1.1 \(status) \(phrase)\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\nCache-Control: no-store\r\n\r\n")
        page.writeString(body)
        clientResponse = page
    }

    /// Applies the policy's `on_failure` to an upstream failure.
    private func applyOnFailure(_ reason: RelayReason, _ detail: String?) {
        guard reason.isUpstreamFailure, machine.reason == nil else { return }
        switch shared.policy.upstream.onFailure {
        case .close:
            if let starttls = shared.policy.upstream.starttls {
                respondInProtocol(starttls, reason, detail ?? "")
            }
        case .reset:
            resetClient = true
        case .http502:
            resetClient = false
            respond(502, "Bad Gateway", "\(reason): \(detail ?? "")")
        }
    }

    /// starttls: the refusal in the protocol's own words (421, * BYE, -ERR) for a waiting client.
    private func respondInProtocol(_ proto: StartTLSProtocol, _ reason: RelayReason, _ detail: String) {
        guard clientResponse == nil else { return }
        let text = StartTLSUpgrade.clientRefusal(
            proto, policy: shared.policy.name, reason: "\(reason)", detail: detail, sequence: mysql?.refusalSequence ?? 0)
        var buffer = client.allocator.buffer(capacity: text.count)
        buffer.writeBytes(text)
        clientResponse = buffer
    }

    /// starttls: a refusal the client reads in its protocol's words whatever the reason
    /// (MySQL: a client asking for TLS, a malformed packet either way during authentication).
    private func refuseInProtocol(_ reason: RelayReason, _ detail: String) {
        if let starttls = shared.policy.upstream.starttls { respondInProtocol(starttls, reason, detail) }
        abort(reason, detail)
    }

    private func refuse(_ reason: RelayReason, _ detail: String) {
        _ = machine.abort(reason, detail)
        client.close(promise: nil)
    }

    // MARK: upstream

    /// When the upstream connection must be up by, retries included.
    private lazy var connectDeadline = NIODeadline.now() + .milliseconds(shared.policy.upstream.connectTimeout.milliseconds)

    private func connect() {
        guard let original else { return }
        _ = connectDeadline
        if connectStarted == nil { connectStarted = .now() }
        let policy = shared.policy
        let target: SocketAddress
        do {
            guard let address = original.ipAddress.flatMap(IPAddress.init) else {
                abort(.connectFailed, "original destination \(original) is not an IP address")
                return
            }
            target = try SocketAddress(ipAddress: address.unmapped.description, port: Int(policy.upstream.port))
        } catch {
            abort(.connectFailed, "bad upstream address: \(error)")
            return
        }
        upstreamAddress = target
        let identity = shared.identity(for: target, requestedHost: requestedHost)
        self.identity = identity
        let glue = GlueHandler(side: .upstream, events: self)
        upstreamGlue = glue
        let tlsHandler = TLSClientHandler(
            context: shared.tlsContext, identity: identity,
            sessionKey: "\(target.ipAddress ?? ""):\(target.port ?? 0)|\(identity)")
        let timeout = TimeAmount.milliseconds(policy.upstream.connectTimeout.milliseconds)
        // starttls: the plain-text upgrade comes first; it adds the TLS handler when done.
        let first: ChannelHandler = policy.upstream.starttls.map { makeUpgradeHandler($0, tlsHandler: tlsHandler) } ?? tlsHandler
        // mysql: between TLS and the glue, the server's authentication packets are renumbered.
        let middle: ChannelHandler? = mysql.map { MySQLServerAuthHandler(session: $0) }
        let handlers = NIOLoopBound((first, middle, glue), eventLoop: eventLoop)
        connectPending = true
        ClientBootstrap(group: eventLoop)
            .connectTimeout(timeout)
            .channelOption(.allowRemoteHalfClosure, value: true)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .channelOption(.recvAllocator, value: WorkerShared.upstreamReceiveSizes)
            .channelInitializer { channel in
                // Runs on this connection's loop before the connect starts: from here the
                // socket exists, and closeAll() can cancel the connect by closing it.
                self.pendingUpstream = channel
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(handlers.value.0)
                    if let middle = handlers.value.1 { try channel.pipeline.syncOperations.addHandler(middle) }
                    try channel.pipeline.syncOperations.addHandler(handlers.value.2)
                }
            }
            .connect(to: target)
            .whenComplete { result in
                self.connectPending = false
                self.pendingUpstream = nil
                switch result {
                case .success(let channel):
                    self.upstreamConnected(channel, timeout: timeout)
                case .failure(let error):
                    self.connectFailed(error)
                }
                // A client gone during the connect waited for it to end to free its slot.
                self.finishIfDone()
            }
    }

    private func upstreamConnected(_ channel: Channel, timeout: TimeAmount) {
        upstream = channel
        let now = NIODeadline.now()
        upstreamUpAt = now
        if let connectStarted { shared.stats.observe("connect", nanoseconds: (now - connectStarted).nanoseconds) }
        channel.closeFuture.whenComplete { _ in
            self.upstreamClosed = true
            self.finishIfDone()
        }
        guard machine.connected() else {
            channel.close(promise: nil)
            return
        }
        // The handshake (and certificate check) gets the same time as the connect; with
        // starttls the plain-text exchange gets that time first, the handshake again after.
        if let starttls = shared.policy.upstream.starttls, !upgradeFinished {
            timer = eventLoop.scheduleTask(in: timeout) {
                guard !self.upgradeFinished else { return }
                self.abort(
                    .starttlsTimeout,
                    "no complete \(starttls.displayName) upgrade exchange within \(self.shared.policy.upstream.connectTimeout)")
            }
            return
        }
        scheduleHandshakeTimeout(timeout)
    }

    private func scheduleHandshakeTimeout(_ timeout: TimeAmount) {
        timer?.cancel()
        timer = eventLoop.scheduleTask(in: timeout) {
            self.abort(.handshakeTimeout, "no TLS handshake within \(self.shared.policy.upstream.connectTimeout)")
        }
    }

    private func connectFailed(_ error: Error) {
        // Out of descriptors for the upstream socket: wait for some to come back (other
        // connections ending) within the connect timeout, rather than fail the client.
        if AcceptPressureLogger.isResourceExhaustion(error), machine.state == .connecting,
            NIODeadline.now() + AcceptPressureLogger.pause < connectDeadline
        {
            eventLoop.scheduleTask(in: AcceptPressureLogger.pause) {
                guard self.machine.state == .connecting else { return }
                self.connect()
            }
            return
        }
        if let channelError = error as? ChannelError, case .connectTimeout = channelError {
            abort(.connectTimeout, "no answer from \(upstreamAddress?.logText ?? "?") within \(shared.policy.upstream.connectTimeout)")
            return
        }
        if let io = error as? IOError, io.errnoCode == ECONNREFUSED {
            resetClient = true
            abort(.connectRefused, "\(upstreamAddress?.logText ?? "?") refused the connection")
            return
        }
        abort(.connectFailed, "\(error)")
    }

    // MARK: starttls

    /// The handler that speaks `proto`'s upgrade on the upstream channel, then hands over
    /// to `tlsHandler`. Its callbacks run on this connection's event loop.
    private func makeUpgradeHandler(_ proto: StartTLSProtocol, tlsHandler: TLSClientHandler) -> StartTLSUpgradeHandler {
        let tls = NIOLoopBound(tlsHandler, eventLoop: eventLoop)
        let handler = StartTLSUpgradeHandler(
            proto, makeTLSHandler: { tls.value },
            onUpgraded: { _ in
                // The plain-text exchange is over: the handshake gets its own connect_timeout.
                self.upgradeFinished = true
                self.scheduleHandshakeTimeout(.milliseconds(self.shared.policy.upstream.connectTimeout.milliseconds))
            },
            onRefused: { why, _ in
                self.upgradeFinished = true
                self.abort(.starttlsRefused, why)
            },
            onGreetClient: mysql.map { session in { greeting in session.greet(greeting) } },
            ehloName: shared.policy.upstream.ehloName)
        mysql?.upgradeHandler = handler
        return handler
    }

    // MARK: RelayEvents

    func handshakeCompleted(_ info: TLSHandshakeInfo) {
        guard machine.handshakeCompleted() == .startRelaying, let upstreamGlue, let clientGlue else { return }
        tlsInfo = info
        timer?.cancel()
        if let upstreamUpAt {
            shared.stats.handshake(resumed: info.resumed, nanoseconds: (NIODeadline.now() - upstreamUpAt).nanoseconds)
        }
        lastActivity = .now()
        // starttls: the client's greeting, made by the gateway now that the server is verified.
        if let starttls = shared.policy.upstream.starttls, let identity,
            let greeting = StartTLSUpgrade.clientGreeting(starttls, server: "\(identity)")
        {
            var buffer = client.allocator.buffer(capacity: greeting.count)
            buffer.writeBytes(greeting)
            client.writeAndFlush(buffer, promise: nil)
        }
        // Replays what the client sent before the server was verified, half-close included.
        GlueHandler.join(clientGlue, upstreamGlue)
        guard machine.isRelaying else { return }
        scheduleIdleCheck(after: idleTimeout)
        // Only now, with the server verified, does the gateway read what the client sends.
        client.setOption(ChannelOptions.autoRead, value: true).whenFailure { error in
            self.abort(.clientError, "cannot read from the client: \(error)")
        }
    }

    func admitFirstBytes(from side: RelayStateMachine.Side, _ buffer: ByteBuffer) -> Bool {
        // mysql: the client's bytes were checked (and renumbered) by MySQLClientSide.
        guard side == .client, mysql == nil, Self.looksLikeClientHello(buffer) else { return true }
        abort(
            .clientSpeaksTLS,
            "the client sent a TLS ClientHello on plain port \(shared.policy.match.port): it already speaks TLS, and the gateway does not wrap TLS in TLS")
        return false
    }

    /// A TLS record header of type handshake (22) and major version 3.
    static func looksLikeClientHello(_ buffer: ByteBuffer) -> Bool {
        guard let type = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self), type == 0x16 else { return false }
        guard let major = buffer.getInteger(at: buffer.readerIndex + 1, as: UInt8.self) else { return true }
        return major == 0x03
    }

    func transferred(from side: RelayStateMachine.Side, bytes: Int) {
        switch side {
        case .client: bytesUp += bytes
        case .upstream: bytesDown += bytes
        }
        lastActivity = .now()
    }

    func inputClosed(_ side: RelayStateMachine.Side) {
        switch machine.inputClosed(side) {
        case .shutdownOutput(of: .client):
            clientGlue?.shutdownOutput()
        case .shutdownOutput(of: .upstream):
            upstreamGlue?.shutdownOutput()
        case .shutdownOutputThenCloseAll(of: let other):
            let glue = other == .client ? clientGlue : upstreamGlue
            let flushed = eventLoop.makePromise(of: Void.self)
            if let glue { glue.afterQueuedWrites(promise: flushed) } else { flushed.succeed(()) }
            // Whether the last bytes went out or the socket failed, the connection is over.
            flushed.futureResult.whenComplete { _ in self.closeAll() }
        case .closeAll:
            closeAll()
        case .none:
            break
        }
    }

    func failed(_ side: RelayStateMachine.Side, _ error: Error) {
        if side == .upstream, machine.isRelaying, mysql?.clientQuit == true {
            // MySQL/MariaDB end a session after COM_QUIT with a bare close (no close_notify;
            // a reset if the gateway's own close_notify arrives after it): nothing was cut.
            abort(.completed, "the server closed the session after the client's COM_QUIT")
            return
        }
        if let tls = error as? TLSError {
            switch tls.kind {
            case .verificationFailed:
                audit(tls)
                abort(.tlsVerifyFailed, tls.detail)
            case .handshakeFailed, .closedDuringHandshake:
                abort(.tlsHandshakeFailed, tls.detail)
            case .uncleanShutdown:
                // The client must not mistake a possibly truncated stream for a clean end.
                resetClient = true
                abort(.upstreamTruncated, tls.detail)
            default:
                resetClient = true
                abort(.upstreamError, tls.description)
            }
            return
        }
        if side == .client {
            abort(.clientError, "\(error)")
        } else {
            resetClient = true
            abort(.upstreamError, "\(error)")
        }
    }

    func closed(_ side: RelayStateMachine.Side) {
        // One side vanished (reset, or full close after both halves): end the other.
        if machine.isRelaying {
            abort(.completed, side == .client ? "client closed the connection" : "server closed the connection")
        } else if side == .client {
            abort(.completed, "client closed before the upstream was ready")
        }
    }

    /// Who talked to whom: the first fields of the connection line and of the audit line.
    private var endpointMetadata: Logger.Metadata {
        [
            "policy": "\(shared.policy.name)",
            "client": "\(clientAddress?.logText ?? "?")",
            "dst": "\(original?.logText ?? "-")",
            "upstream": "\(upstreamAddress?.logText ?? "-")",
            "sni": "\(identity.map { "\($0)" } ?? "-")",
        ]
    }

    /// One line per refused certificate, with what a security team needs to follow up.
    private func audit(_ error: TLSError) {
        var metadata = endpointMetadata
        metadata["verify_error"] = "\(error.detail)"
        metadata["verify_code"] = "\(error.verifyCode ?? 0)"
        if let cert = error.peerCertificate {
            metadata["cert_subject"] = "\(cert.subject)"
            metadata["cert_issuer"] = "\(cert.issuer)"
            metadata["cert_sans"] = "\(cert.subjectAltNames)"
            metadata["cert_not_after"] = "\(cert.notAfter)"
            metadata["cert_sha256"] = "\(cert.sha256Fingerprint)"
            metadata["cert_spki_pin"] = "\(cert.spkiPin)"
        }
        shared.logger.warning("certificate rejected", metadata: metadata)
    }

    // MARK: ending

    private var idleTimeout: TimeAmount { .milliseconds(shared.policy.limits.idleTimeout.milliseconds) }

    private func scheduleIdleCheck(after delay: TimeAmount) {
        timer = eventLoop.scheduleTask(in: delay) {
            guard self.machine.isRelaying else { return }
            let idleFor = NIODeadline.now() - self.lastActivity
            if idleFor >= self.idleTimeout {
                self.abort(.idleTimeout, "no data either way for \(self.shared.policy.limits.idleTimeout)")
            } else {
                self.scheduleIdleCheck(after: self.idleTimeout - idleFor)
            }
        }
    }

    private func abort(_ reason: RelayReason, _ detail: String?) {
        applyOnFailure(reason, detail)
        guard machine.abort(reason, detail) else { return }
        closeAll()
    }

    private func closeAll() {
        timer?.cancel()
        timer = nil
        upstream?.close(promise: nil)
        // A pending connect is cancelled: closing its channel closes the socket (no SYN
        // retries until connect_timeout) and fails the connect, which ends the connection.
        pendingUpstream?.close(promise: nil)
        if let page = clientResponse {
            // Answer, half-close, and give the client a moment to read before closing
            // (closing with unread request bytes would send a RST over the answer).
            clientResponse = nil
            let client = self.client
            client.writeAndFlush(page).whenComplete { _ in
                client.close(mode: .output, promise: nil)
                client.eventLoop.scheduleTask(in: .milliseconds(500)) { client.close(promise: nil) }
            }
            return
        }
        if !resetClient, let reason = machine.reason, reason.result != "ok" {
            // A refusal or failure: FIN first, so the client sees a plain close even when its
            // request is still unread (closing with unread bytes would send a RST at once).
            let client = self.client
            client.close(mode: .output, promise: nil)
            client.eventLoop.scheduleTask(in: .milliseconds(250)) { client.close(promise: nil) }
            return
        }
        if resetClient, let provider = client as? SocketOptionProvider {
            // SO_LINGER 0: close sends RST, so the client sees an error, not a clean end.
            provider.setSoLinger(linger(l_onoff: 1, l_linger: 0)).whenComplete { _ in
                self.client.close(promise: nil)
            }
        } else {
            client.close(promise: nil)
        }
    }

    private func finishIfDone() {
        // The slot is held until nothing of the connection is left: a pending connect
        // counts against max_connections like a relayed connection.
        guard clientClosed, !connectPending, upstream == nil || upstreamClosed, !logged else { return }
        logged = true
        timer?.cancel()
        if holdsSlot {
            holdsSlot = false
            shared.limiter.release()
        }
        _ = machine.abort(.completed, nil)
        log()
        // Break the cycles (glue → connection → glue, connection → channels): without this
        // every connection's channels and buffers stayed alive (~9 KiB each, seen in the bench).
        clientGlue?.unlink()
        upstreamGlue?.unlink()
        mysql?.upgradeHandler = nil
        mysql = nil
        clientGlue = nil
        upstreamGlue = nil
        upstream = nil
        timer = nil
    }

    private func log() {
        let reason = machine.reason ?? .completed
        let duration = NIODeadline.now() - started
        shared.stats.closed(reason: reason, bytesUp: bytesUp, bytesDown: bytesDown, nanoseconds: duration.nanoseconds)
        var metadata = endpointMetadata
        metadata["tls_version"] = "\(tlsInfo?.version ?? "-")"
        metadata["cipher"] = "\(tlsInfo?.cipher ?? "-")"
        metadata["resumed"] = "\(tlsInfo?.resumed ?? false)"
        metadata["bytes_up"] = "\(bytesUp)"
        metadata["bytes_down"] = "\(bytesDown)"
        metadata["duration_ms"] = "\(duration.nanoseconds / 1_000_000)"
        metadata["result"] = "\(reason.result)"
        metadata["reason"] = "\(reason)"
        metadata["alpn"] = "\(tlsInfo?.alpn ?? "-")"
        metadata["detail"] = "\(machine.detail ?? "-")"
        let level: Logger.Level = reason.result == "ok" ? .info : .warning
        shared.logger.log(level: level, "connection closed", metadata: metadata)
    }

}

extension SocketAddress {
    /// How tlsgate writes an address in logs: "198.19.0.10:443", "[2001:2::10]:443"; an
    /// IPv4-mapped address (dual-stack socket) as plain IPv4.
    public var logText: String {
        guard let ip = ipAddress, let port else { return "\(self)" }
        if case .v6 = self {
            if let v4 = IPAddress(ip)?.unmapped, v4.isIPv4 { return "\(v4):\(port)" }
            return "[\(ip)]:\(port)"
        }
        return "\(ip):\(port)"
    }
}
