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
/// relay. A thin driver: `RelayStateMachine` makes every decision; this class feeds it
/// what the channels and timers report and carries out the actions it returns.
///
/// Lives on the client channel's event loop; the upstream channel uses the same loop, so
/// no state here is shared across threads (hence `@unchecked Sendable`: every callback
/// that touches it runs on that one loop).
final class RelayConnection: RelayEvents, @unchecked Sendable {
    typealias Machine = RelayStateMachine
    private let client: Channel
    private let shared: WorkerShared
    private var machine: RelayStateMachine
    /// The upstream channel, from the moment its socket exists (while the connect is
    /// pending, closing it cancels the connect).
    private var upstream: Channel?
    private var clientGlue: GlueHandler?
    private var upstreamGlue: GlueHandler?
    private var timers: [Machine.Timer: Scheduled<Void>] = [:]
    private let started = NIODeadline.now()
    private var tlsInfo: TLSHandshakeInfo?
    private var original: SocketAddress?
    /// `original`'s address (from its bytes, once).
    private var originalIP: IPAddress?
    private var upstreamAddress: SocketAddress?
    private var identity: TLSPeerIdentity?
    /// starttls = "mysql": the two channels' shared protocol state.
    private var mysql: MySQLSession?
    /// starttls = "postgres"/"postgres-direct": the client's preamble handler (a refusal
    /// waits in it for the client's startup message).
    private var postgresClient: PostgresClientHandler?
    private let clientAddress: SocketAddress?
    /// When the upstream connect began and when it finished (for the metrics' histograms).
    private var connectStarted: NIODeadline?
    private var upstreamUpAt: NIODeadline?

    init(client: Channel, shared: WorkerShared) {
        self.client = client
        self.shared = shared
        self.clientAddress = client.remoteAddress
        self.machine = RelayStateMachine(configuration: .init(policy: shared.policy))
    }

    private var eventLoop: EventLoop { client.eventLoop }

    func start() {
        shared.stats.accepted()
        client.closeFuture.whenComplete { _ in self.run(self.machine.channelClosed(.client)) }
        run(machine.accepted(slot: shared.limiter.acquire()))
        guard machine.holdsSlot else { return }
        // The client's glue is there from the start, to hold anything that arrives early.
        let glue = GlueHandler(side: .client, events: self, flusher: shared.flusher(for: eventLoop))
        clientGlue = glue
        do {
            try client.pipeline.syncOperations.addHandler(glue)
        } catch {
            run(machine.refuse(.clientError, "cannot set up the connection: \(error)"))
            return
        }
        if shared.transparent {
            // TPROXY: no NAT happened; the socket's own local address is the destination.
            original = client.localAddress
            check()
            return
        }
        OriginalDestination.read(from: client) { result in
            self.original = try? result.get()
            self.check()
        }
    }

    private func check() {
        originalIP = original.flatMap(IPAddress.init)
        let local = client.localAddress
        let verdict = shared.destinationCheck().evaluate(
            original: originalIP, originalPort: original?.port ?? 0,
            socketLocal: shared.transparent ? nil : local.flatMap(IPAddress.init),
            socketLocalPort: local?.port ?? 0)
        run(machine.destinationChecked(verdict))
    }

    // MARK: carrying out the machine's actions

    /// In order; an action may feed the machine again (a close reports at once), which the
    /// machine allows for by putting such actions last.
    private func run(_ actions: [Machine.Action]) {
        for action in actions { perform(action) }
    }

    private func perform(_ action: Machine.Action) {
        switch action {
        case .schedule(let timer, let delay):
            timers[timer]?.cancel()
            guard machine.phase != .closed else { return }
            timers[timer] = eventLoop.scheduleTask(in: delay) {
                self.timers[timer] = nil
                self.run(self.machine.timerFired(timer, now: .now()))
            }
        case .cancel(let timer):
            timers.removeValue(forKey: timer)?.cancel()
        case .startSniffing:
            sniffHost()
        case .prepareClient(let proto):
            prepareClient(proto)
        case .connect(let requestedHost, let timeout):
            connect(requestedHost: requestedHost, timeout: timeout)
        case .closeUpstream:
            upstream?.close(promise: nil)
        case .startRelaying:
            startRelaying()
        case .enableClientReads:
            // Only now, with the server verified, does the gateway read what the client sends.
            // (syncOptions: on the client's event loop, where every action runs.)
            assert(eventLoop.inEventLoop)
            do {
                try client.socketOptions().setOption(.autoRead, value: true)
            } catch {
                run(machine.failed(.client, .clientError, "cannot read from the client: \(error)"))
            }
        case .shutdownOutput(let side):
            glue(side)?.shutdownOutput()
        case .flush(let side):
            let flushed = eventLoop.makePromise(of: Void.self)
            if let glue = glue(side) { glue.afterQueuedWrites(promise: flushed) } else { flushed.succeed(()) }
            // Whether the last bytes went out or the socket failed, the connection is over.
            flushed.futureResult.whenComplete { _ in self.run(self.machine.flushed()) }
        case .answerClient(let answer):
            let written = eventLoop.makePromise(of: Void.self)
            written.futureResult.whenComplete { _ in self.run(self.machine.answerWritten()) }
            if let postgresClient {
                postgresClient.refuse(render(answer), promise: written)  // after the startup message
            } else {
                client.writeAndFlush(render(answer), promise: written)
            }
        case .closeClientOutput:
            client.close(mode: .output, promise: nil)
        case .closeClient:
            client.close(promise: nil)
        case .resetClient:
            if let provider = client as? SocketOptionProvider {
                // SO_LINGER 0: close sends RST, so the client sees an error, not a clean end.
                provider.setSoLinger(linger(l_onoff: 1, l_linger: 0)).whenComplete { _ in
                    self.client.close(promise: nil)
                }
            } else {
                client.close(promise: nil)
            }
        case .releaseSlot:
            shared.limiter.release()
        case .logOutcome(let reason, let detail):
            log(reason, detail)
            forget()
        }
    }

    private func glue(_ side: Machine.Side) -> GlueHandler? {
        side == .client ? clientGlue : upstreamGlue
    }

    // MARK: the client side

    private func sniffHost() {
        let sniffer = HostSniffHandler(
            onBytes: { bytes in
                self.run(self.machine.hostBytes(bytes))
                return self.machine.sniffing
            },
            onInputClosed: { self.run(self.machine.hostInputClosed()) })
        do {
            try client.pipeline.syncOperations.addHandler(sniffer, position: .first)
        } catch {
            run(machine.abort(.clientError, "cannot read the request: \(error)"))
        }
    }

    /// starttls mysql: the client gets the gateway's greeting, its answer is held and
    /// renumbered; postgres: the client's SSLRequest is answered "N", its startup message held.
    private func prepareClient(_ proto: StartTLSProtocol) {
        do {
            if proto == .mysql {
                let session = MySQLSession { reason, detail in self.run(self.machine.refuseInProtocol(reason, detail)) }
                mysql = session
                try client.pipeline.syncOperations.addHandler(MySQLClientHandler(session: session), position: .first)
            } else {
                let handler = PostgresClientHandler()
                postgresClient = handler
                try client.pipeline.syncOperations.addHandler(handler, position: .first)
            }
        } catch {
            run(machine.abort(.clientError, "cannot set up the connection: \(error)"))
            return
        }
        run(machine.clientPrepared())
    }

    /// What the client reads when the gateway answers instead of relaying.
    private func render(_ answer: Machine.Answer) -> ByteBuffer {
        switch answer {
        case .http(let status, let phrase, let detail):
            let body = """
                tlsgate did not relay this request.
                policy: \(shared.policy.name)
                reason: \(detail)

                """
            var page = client.allocator.buffer(capacity: 256 + body.utf8.count)
            page.writeString(
                "HTTP/1.1 \(status) \(phrase)\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\nCache-Control: no-store\r\n\r\n")
            page.writeString(body)
            return page
        case .inProtocol(let proto, let reason, let detail):
            let text = StartTLSUpgrade.clientRefusal(
                proto, policy: shared.policy.name, reason: "\(reason)", detail: detail,
                sequence: mysql?.refusalSequence ?? 0)
            var buffer = client.allocator.buffer(capacity: text.count)
            buffer.writeBytes(text)
            return buffer
        }
    }

    // MARK: upstream

    private func connect(requestedHost: String?, timeout: TimeAmount) {
        if connectStarted == nil { connectStarted = .now() }
        let policy = shared.policy
        guard let address = originalIP?.unmapped else {
            connectFailed(.other("original destination \(original?.logText ?? "-") is not an IP address"))
            return
        }
        let port = policy.upstream.port
        let target = SocketAddress(address, port: port)
        upstreamAddress = target
        let identity = shared.identity(for: address, requestedHost: requestedHost)
        self.identity = identity
        let glue = GlueHandler(side: .upstream, events: self, flusher: shared.flusher(for: eventLoop))
        upstreamGlue = glue
        let tlsHandler = TLSClientHandler(
            context: shared.tlsContext, identity: identity,
            sessionKey: Self.sessionKey(address: address, port: port, identity: identity))
        // starttls: the plain-text upgrade comes first; it adds the TLS handler when done.
        let first: ChannelHandler = policy.upstream.starttls.map { makeUpgradeHandler($0, tlsHandler: tlsHandler) } ?? tlsHandler
        // mysql: between TLS and the glue, the server's authentication packets are renumbered.
        let middle: ChannelHandler? = mysql.map { MySQLServerAuthHandler(session: $0) }
        let handlers = NIOLoopBound((first, middle, glue), eventLoop: eventLoop)
        // ClientBootstrap sets TCP_NODELAY itself; the other options are set directly in the
        // initializer (as `channelOption`, each would go through a chain of futures).
        ClientBootstrap(group: eventLoop)
            .connectTimeout(timeout)
            .channelInitializer { channel in
                // Runs on this connection's loop before the connect starts: from here the
                // socket exists, and closing it cancels the connect.
                self.upstream = channel
                return channel.eventLoop.makeCompletedFuture {
                    let options = try channel.socketOptions()
                    try options.setOption(.allowRemoteHalfClosure, value: true)
                    try options.setOption(.recvAllocator, value: WorkerShared.upstreamReceiveSizes)
                    try channel.pipeline.syncOperations.addHandler(handlers.value.0)
                    if let middle = handlers.value.1 { try channel.pipeline.syncOperations.addHandler(middle) }
                    try channel.pipeline.syncOperations.addHandler(handlers.value.2)
                }
            }
            .connect(to: target)
            .whenComplete { result in
                switch result {
                case .success(let channel):
                    self.upstreamConnected(channel)
                case .failure(let error):
                    self.upstream = nil
                    self.connectFailed(self.connectFailure(error))
                }
            }
    }

    /// The session cache's key: a session is offered again only to the same server address,
    /// port and name ("198.19.0.10:443|good.test").
    static func sessionKey(address: IPAddress, port: UInt16, identity: TLSPeerIdentity) -> String {
        "\(address):\(port)|\(identity)"
    }

    private func upstreamConnected(_ channel: Channel) {
        upstream = channel
        let now = NIODeadline.now()
        upstreamUpAt = now
        if let connectStarted { shared.stats.observe("connect", nanoseconds: (now - connectStarted).nanoseconds) }
        channel.closeFuture.whenComplete { _ in self.run(self.machine.channelClosed(.upstream)) }
        run(machine.connected())
    }

    private func connectFailure(_ error: Error) -> Machine.ConnectFailure {
        let address = upstreamAddress?.logText ?? "?"
        if AcceptPressureLogger.isResourceExhaustion(error) { return .resourceExhausted("\(error)") }
        if let channelError = error as? ChannelError, case .connectTimeout = channelError { return .timedOut(address: address) }
        if let io = error as? IOError, io.errnoCode == ECONNREFUSED { return .refused(address: address) }
        return .other("\(error)")
    }

    private func connectFailed(_ failure: Machine.ConnectFailure) {
        let elapsed = connectStarted.map { NIODeadline.now() - $0 } ?? .zero
        run(machine.connectFailed(failure, elapsed: elapsed))
    }

    /// The handler that speaks `proto`'s upgrade on the upstream channel, then hands over
    /// to `tlsHandler`. Its callbacks run on this connection's event loop.
    private func makeUpgradeHandler(_ proto: StartTLSProtocol, tlsHandler: TLSClientHandler) -> StartTLSUpgradeHandler {
        let tls = NIOLoopBound(tlsHandler, eventLoop: eventLoop)
        let handler = StartTLSUpgradeHandler(
            proto, makeTLSHandler: { tls.value },
            onUpgraded: { _ in self.run(self.machine.upgraded()) },
            onRefused: { why, _ in self.run(self.machine.upgradeRefused(why)) },
            onGreetClient: mysql.map { session in { greeting in session.greet(greeting) } },
            ehloName: shared.policy.upstream.ehloName)
        mysql?.upgradeHandler = handler
        return handler
    }

    // MARK: relaying

    private func startRelaying() {
        guard let upstreamGlue, let clientGlue else { return }
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
        run(machine.relayStarted())
    }

    // MARK: RelayEvents

    func handshakeCompleted(_ info: TLSHandshakeInfo) {
        guard case .handshaking = machine.phase else { return }
        tlsInfo = info
        let now = NIODeadline.now()
        if let upstreamUpAt {
            shared.stats.handshake(resumed: info.resumed, nanoseconds: (now - upstreamUpAt).nanoseconds)
        }
        run(machine.handshakeCompleted(now: now))
    }

    func admitFirstBytes(from side: Machine.Side, _ buffer: ByteBuffer) -> Bool {
        switch machine.firstBytes(from: side, buffer.readableBytesView) {
        case .admit:
            return true
        case .drop(let actions):
            run(actions)
            return false
        }
    }

    func transferred(from side: Machine.Side, bytes: Int) {
        machine.transferred(from: side, bytes: bytes, now: .now())
    }

    func inputClosed(_ side: Machine.Side) {
        run(machine.inputClosed(side))
    }

    func failed(_ side: Machine.Side, _ error: Error) {
        let reason: RelayReason
        let detail: String
        if let tls = error as? TLSError {
            switch tls.kind {
            case .verificationFailed:
                audit(tls)
                (reason, detail) = (.tlsVerifyFailed, tls.detail)
            case .handshakeFailed, .closedDuringHandshake:
                (reason, detail) = (.tlsHandshakeFailed, tls.detail)
            case .uncleanShutdown:
                (reason, detail) = (.upstreamTruncated, tls.detail)
            default:
                (reason, detail) = (.upstreamError, tls.description)
            }
        } else {
            (reason, detail) = (side == .client ? .clientError : .upstreamError, "\(error)")
        }
        run(machine.failed(side, reason, detail, afterClientQuit: mysql?.clientQuit == true))
    }

    func closed(_ side: Machine.Side) {
        run(machine.sideClosed(side))
    }

    /// Who talked to whom: the first fields of the connection line and of the audit line.
    /// The fields that say which connection a line is about, in a dictionary with room for
    /// `capacity` fields in all (no regrowth while the caller adds its own).
    private func endpointMetadata(capacity: Int) -> Logger.Metadata {
        var metadata = Logger.Metadata(minimumCapacity: capacity)
        metadata["policy"] = "\(shared.policy.name)"
        metadata["client"] = "\(clientAddress?.logText ?? "?")"
        metadata["dst"] = "\(original?.logText ?? "-")"
        metadata["upstream"] = "\(upstreamAddress?.logText ?? "-")"
        metadata["sni"] = "\(identity.map { "\($0)" } ?? "-")"
        return metadata
    }

    /// One line per refused certificate, with what a security team needs to follow up.
    private func audit(_ error: TLSError) {
        var metadata = endpointMetadata(capacity: 13)
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

    /// Breaks the cycles (glue → connection → glue, connection → channels): without this
    /// every connection's channels and buffers stayed alive (~9 KiB each, seen in the bench).
    private func forget() {
        for scheduled in timers.values { scheduled.cancel() }
        timers = [:]
        clientGlue?.unlink()
        upstreamGlue?.unlink()
        mysql?.upgradeHandler = nil
        mysql = nil
        postgresClient = nil
        clientGlue = nil
        upstreamGlue = nil
        upstream = nil
    }

    private func log(_ reason: RelayReason, _ detail: String?) {
        let duration = NIODeadline.now() - started
        let (bytesUp, bytesDown) = (machine.bytesUp, machine.bytesDown)
        shared.stats.closed(reason: reason, bytesUp: bytesUp, bytesDown: bytesDown, nanoseconds: duration.nanoseconds)
        let level: Logger.Level = reason.result == .ok ? .info : .warning
        // A line the log level drops costs nothing: no fields built (one per connection).
        guard shared.logger.logLevel <= level else { return }
        var metadata = endpointMetadata(capacity: 15)
        metadata["tls_version"] = "\(tlsInfo?.version ?? "-")"
        metadata["cipher"] = "\(tlsInfo?.cipher ?? "-")"
        metadata["resumed"] = "\(tlsInfo?.resumed ?? false)"
        metadata["bytes_up"] = "\(bytesUp)"
        metadata["bytes_down"] = "\(bytesDown)"
        metadata["duration_ms"] = "\(duration.nanoseconds / 1_000_000)"
        metadata["result"] = "\(reason.result)"
        metadata["reason"] = "\(reason)"
        metadata["alpn"] = "\(tlsInfo?.alpn ?? "-")"
        metadata["detail"] = "\(detail ?? "-")"
        shared.logger.log(level: level, "connection closed", metadata: metadata)
    }
}

extension SocketAddress {
    /// How tlsgate writes an address in logs: "198.19.0.10:443", "[2001:2::10]:443"; an
    /// IPv4-mapped address (dual-stack socket) as plain IPv4.
    public var logText: String {
        guard let ip = IPAddress(self)?.unmapped, let port else { return "\(self)" }
        return ip.isIPv4 ? "\(ip):\(port)" : "[\(ip)]:\(port)"
    }

    /// The socket address of `ip` (4 bytes: IPv4, 16: IPv6) and `port`, made from its bytes.
    init(_ ip: IPAddress, port: UInt16) {
        if ip.isIPv4 {
            var sin = sockaddr_in()
            sin.sin_family = sa_family_t(AF_INET)
            sin.sin_port = in_port_t(port).bigEndian
            withUnsafeMutableBytes(of: &sin.sin_addr) { $0.copyBytes(from: ip.bytes) }
            self.init(sin, host: "")
        } else {
            var sin6 = sockaddr_in6()
            sin6.sin6_family = sa_family_t(AF_INET6)
            sin6.sin6_port = in_port_t(port).bigEndian
            withUnsafeMutableBytes(of: &sin6.sin6_addr) { $0.copyBytes(from: ip.bytes) }
            self.init(sin6, host: "")
        }
    }
}

extension IPAddress {
    /// An IPv4 or IPv6 socket address's address, from its bytes (no text in between: NIO's
    /// `ipAddress` formats with inet_ntop, and parsing that back cost every connection
    /// several allocations); nil for a Unix socket address.
    init?(_ address: SocketAddress) {
        switch address {
        case .v4(let v4):
            self.init(bytes: withUnsafeBytes(of: v4.address.sin_addr) { Array($0) })
        case .v6(let v6):
            self.init(bytes: withUnsafeBytes(of: v6.address.sin6_addr) { Array($0) })
        case .unixDomainSocket:
            return nil
        }
    }
}
