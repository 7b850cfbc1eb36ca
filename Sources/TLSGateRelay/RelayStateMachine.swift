import NIOCore
import TLSGatePolicy

/// Every decision about one relayed connection, kept apart from NIO so it is tested alone:
/// `RelayConnection` feeds it what happened (inputs) and carries out what it returns
/// (actions), in order. It owns the phase, the outcome (first reason wins), the answer the
/// client gets, which timers run, whether the upstream channel exists, and the slot.
///
/// Half-close is carried across: when the client finishes sending (TCP FIN) the gateway
/// sends close_notify and FIN upstream but keeps reading the server's answer; when the
/// server sends close_notify the gateway sends FIN to the client but keeps relaying what
/// the client still sends. When both directions have ended, both connections close.
///
/// Actions that may call back into the connection at once (closing a channel, writing the
/// answer, connecting) come last in what an input returns, after any timer they need.
struct RelayStateMachine {
    enum Side: Sendable, Equatable {
        case client
        case upstream

        var other: Side { self == .client ? .upstream : .client }
    }

    enum Phase: Equatable {
        /// Reading the original destination and checking it against the policy.
        case checking
        /// http-host: reading the client's request head for its Host header.
        case sniffing
        /// TCP connect to the upstream server (retried while out of descriptors).
        case connecting
        /// starttls exchange (`.upgrading`), then TLS handshake and certificate check
        /// (`.tls`); no client byte has been passed on yet.
        case handshaking(Handshake)
        /// Bytes flow both ways.
        case relaying
        /// This side stopped sending (its end was passed on); the other direction still flows.
        case halfClosed(Side)
        /// Both directions ended: what is still queued for this side is being written, then
        /// both connections close.
        case flushing(Side)
        /// The end is decided: the channels are closing, an answer is being written, or the
        /// close delays after an answer or refusal are running.
        case draining
        /// Nothing of the connection is left: the outcome is logged and the slot released.
        case closed
    }

    enum Handshake: Equatable {
        case upgrading
        case tls
    }

    /// Each timeout has its own timer.
    enum Timer: UInt8, CaseIterable, Sendable {
        /// http-host: the whole request head must arrive within `host_header_timeout`.
        case hostHeader
        /// Out of descriptors for the upstream socket: the pause before connecting again.
        case connectRetry
        /// starttls: the plain-text exchange must finish within `connect_timeout`.
        case upgrade
        /// The TLS handshake and certificate check must finish within `connect_timeout`.
        case handshake
        /// No byte either way for `idle_timeout` ends a relayed connection.
        case idle
        /// After an answer (HTTP error page, starttls refusal): the client's time to read it.
        case closeAfterAnswer
        /// After a refusal or failure without an answer: FIN first, then close.
        case closeAfterRefusal
    }

    /// What the client gets when the gateway answers instead of relaying.
    enum Answer: Equatable {
        /// An HTTP error page (400, 403, 408, 502).
        case http(status: Int, phrase: String, detail: String)
        /// starttls: the refusal in the protocol's own words (421, * BYE, -ERR, ERR packet).
        case inProtocol(StartTLSProtocol, RelayReason, detail: String)
    }

    /// How an upstream connect failed.
    enum ConnectFailure: Equatable {
        /// Out of descriptors or memory: tried again while `connect_timeout` allows.
        case resourceExhausted(String)
        case timedOut(address: String)
        case refused(address: String)
        case other(String)
    }

    enum Action: Equatable {
        /// Scheduled anew (a running timer of the same name is cancelled first).
        case schedule(Timer, TimeAmount)
        case cancel(Timer)
        /// http-host: read the request head; its bytes come back as `hostBytes`.
        case startSniffing
        /// starttls mysql / postgres: the client-side handler goes in before connecting;
        /// `clientPrepared()` follows when it is there.
        case prepareClient(StartTLSProtocol)
        /// Open the upstream connection (`requestedHost`: http-host's name) within `timeout`
        /// (what is left of `connect_timeout` when connecting again).
        case connect(requestedHost: String?, timeout: TimeAmount)
        /// Close the upstream channel, or cancel its pending connect.
        case closeUpstream
        /// The server is verified: greet a starttls client, join the two glues (which
        /// replays what the client sent early); `relayStarted()` follows.
        case startRelaying
        /// Read what the client sends from now on.
        case enableClientReads
        /// Pass the end of one direction on (FIN, or close_notify + FIN) towards `Side`.
        case shutdownOutput(Side)
        /// Write what is still queued for `Side`; `flushed()` follows, whatever the result.
        case flush(Side)
        /// Write this answer to the client; `answerWritten()` follows, whatever the result.
        case answerClient(Answer)
        /// Half-close the client's connection (FIN) ahead of a close delay.
        case closeClientOutput
        case closeClient
        /// Close the client's connection with RST (SO_LINGER 0), so it sees an error.
        case resetClient
        case releaseSlot
        /// Exactly once, at the end.
        case logOutcome(RelayReason, detail: String?)
    }

    struct Configuration: Equatable {
        var connectTimeout: TimeSpan
        var hostHeaderTimeout: TimeSpan
        var idleTimeout: TimeSpan
        /// http-host: the client's Host header names the server.
        var sniffsHost: Bool
        var allowedNames: [String]
        var maxHeaderBytes: Int
        var starttls: StartTLSProtocol?
        var onFailure: UpstreamRule.FailureAction
        /// For the details of refusals.
        var matchPort: UInt16
        var maxConnections: Int

        /// How long the client may read an answer before its connection closes (closing with
        /// unread request bytes would send a RST over the answer).
        static let closeAfterAnswer = TimeAmount.milliseconds(500)
        /// How long after its FIN a refused client's connection closes (it then sees a plain
        /// close even when its request is still unread).
        static let closeAfterRefusal = TimeAmount.milliseconds(250)
        /// The pause before connecting again when out of descriptors.
        static let connectRetryPause = AcceptPressureLogger.pause

        init(
            connectTimeout: TimeSpan = UpstreamRule.defaultConnectTimeout,
            hostHeaderTimeout: TimeSpan = UpstreamRule.defaultHostHeaderTimeout,
            idleTimeout: TimeSpan = Limits.defaultIdleTimeout, sniffsHost: Bool = false, allowedNames: [String] = [],
            maxHeaderBytes: Int = UpstreamRule.defaultMaxHeaderBytes, starttls: StartTLSProtocol? = nil,
            onFailure: UpstreamRule.FailureAction = .close, matchPort: UInt16 = 80,
            maxConnections: Int = Limits.defaultMaxConnections
        ) {
            self.connectTimeout = connectTimeout
            self.hostHeaderTimeout = hostHeaderTimeout
            self.idleTimeout = idleTimeout
            self.sniffsHost = sniffsHost
            self.allowedNames = allowedNames
            self.maxHeaderBytes = maxHeaderBytes
            self.starttls = starttls
            self.onFailure = onFailure
            self.matchPort = matchPort
            self.maxConnections = maxConnections
        }

        init(policy: Policy) {
            let upstream = policy.upstream
            var sniffsHost = false
            if case .httpHost = upstream.serverName { sniffsHost = true }
            self.init(
                connectTimeout: upstream.connectTimeout, hostHeaderTimeout: upstream.hostHeaderTimeout,
                idleTimeout: policy.limits.idleTimeout, sniffsHost: sniffsHost, allowedNames: upstream.allowedNames,
                maxHeaderBytes: upstream.maxHeaderBytes, starttls: upstream.starttls, onFailure: upstream.onFailure,
                matchPort: policy.match.port, maxConnections: policy.limits.maxConnections)
        }
    }

    /// Where the upstream channel is: it must be gone before the connection ends.
    enum Upstream: Equatable {
        case none
        case connecting
        case open
        case gone
    }

    let configuration: Configuration
    private(set) var phase: Phase = .checking
    /// The first reason recorded wins: later ones are consequences.
    private(set) var reason: RelayReason?
    private(set) var detail: String?
    /// The answer the client gets when the connection ends (the first one set).
    private(set) var answer: Answer?
    /// End the client's connection with RST: the server reset or truncated, or on_failure.
    private(set) var resetsClient = false
    private(set) var upstream: Upstream = .none
    private(set) var clientOpen = true
    private(set) var holdsSlot = false
    /// http-host: the name the client asked for.
    private(set) var requestedHost: String?
    private(set) var bytesUp = 0
    private(set) var bytesDown = 0
    private var sniffer: HTTPHostSniffer
    /// starttls: the exchange ended before the connect was reported (postgres-direct).
    private var upgradeDone = false
    /// Out of descriptors: what is left of `connect_timeout` for the next attempt.
    private var retryTimeout: TimeAmount = .zero
    private var lastActivity: NIODeadline = .uptimeNanoseconds(0)
    /// Running timers, one bit per `Timer`.
    private var armed: UInt8 = 0

    init(configuration: Configuration) {
        self.configuration = configuration
        self.sniffer = HTTPHostSniffer(maxBytes: configuration.maxHeaderBytes)
    }

    func isArmed(_ timer: Timer) -> Bool { armed & (1 << timer.rawValue) != 0 }

    /// Bytes flow at least one way.
    var isRelaying: Bool {
        switch phase {
        case .relaying, .halfClosed: return true
        default: return false
        }
    }

    /// Neither ending nor ended.
    private var isLive: Bool {
        switch phase {
        case .flushing, .draining, .closed: return false
        default: return true
        }
    }

    // MARK: inputs

    /// The connection was accepted; `slot`: the policy's `max_connections` allowed it.
    mutating func accepted(slot: Bool) -> [Action] {
        guard slot else {
            return refuse(.maxConnections, "the policy's max_connections (\(configuration.maxConnections)) is reached")
        }
        holdsSlot = true
        return []
    }

    /// Ends the connection before anything was set up: record, close the client at once.
    mutating func refuse(_ reason: RelayReason, _ detail: String) -> [Action] {
        record(reason, detail)
        guard isLive else { return [] }
        phase = .draining
        var actions = cancelTimers()
        actions.append(.closeClient)
        return actions
    }

    /// The original destination was read and checked against the policy.
    mutating func destinationChecked(_ verdict: DestinationCheck.Verdict) -> [Action] {
        guard phase == .checking else { return [] }
        switch verdict {
        case .refuse(let reason, let detail):
            return refuse(reason, detail)
        case .allow:
            if configuration.sniffsHost {
                phase = .sniffing
                return [schedule(.hostHeader, configuration.hostHeaderTimeout), .startSniffing]
            }
            switch configuration.starttls {
            case .mysql?, .postgres?, .postgresDirect?:
                return [.prepareClient(configuration.starttls!)]
            default:
                return startConnecting()
            }
        }
    }

    /// The client-side handler asked for by `.prepareClient` is in place.
    mutating func clientPrepared() -> [Action] {
        guard phase == .checking else { return [] }
        return startConnecting()
    }

    /// http-host: bytes of the client's request head, as they come.
    mutating func hostBytes<Bytes: Sequence>(_ bytes: Bytes) -> [Action] where Bytes.Element == UInt8 {
        guard phase == .sniffing else { return [] }
        let result = sniffer.feed(bytes)
        guard result != .needMore else { return [] }
        // Decided: the head it kept is not needed for the rest of the connection.
        sniffer = HTTPHostSniffer(maxBytes: configuration.maxHeaderBytes)
        switch result {
        case .needMore:
            return []
        case .bad(HTTPHostSniffer.clientHello):
            return abort(.clientSpeaksTLS, clientSpeaksTLSDetail)
        case .bad(let why):
            return badRequest(why)
        case .host(let host):
            guard HTTPHostSniffer.isAllowed(host, by: configuration.allowedNames) else {
                let why = "Host \"\(host)\" is not in the policy's allowed_names"
                setAnswer(.http(status: 403, phrase: "Forbidden", detail: why))
                return abort(.hostNotAllowed, why)
            }
            requestedHost = host
            var actions = cancelTimers()
            actions += startConnecting()
            return actions
        }
    }

    /// http-host: the client stopped sending before its request head was whole.
    mutating func hostInputClosed() -> [Action] {
        guard phase == .sniffing else { return [] }
        return badRequest("the client closed before sending a whole request head")
    }

    /// Whether the connection still waits for a request head (the sniffer keeps reading).
    var sniffing: Bool { phase == .sniffing }

    /// The upstream connect succeeded.
    mutating func connected() -> [Action] {
        upstream = .open
        guard phase == .connecting else { return [.closeUpstream] }
        // The handshake (and certificate check) gets the same time as the connect; with
        // starttls the plain-text exchange gets that time first, the handshake again after.
        if configuration.starttls != nil, !upgradeDone {
            phase = .handshaking(.upgrading)
            return [schedule(.upgrade, configuration.connectTimeout)]
        }
        phase = .handshaking(.tls)
        return [schedule(.handshake, configuration.connectTimeout)]
    }

    /// The upstream connect failed; `elapsed`: since the first attempt.
    mutating func connectFailed(_ failure: ConnectFailure, elapsed: TimeAmount) -> [Action] {
        upstream = .none
        var actions: [Action]
        switch failure {
        case .resourceExhausted(let detail):
            // Wait for descriptors to come back (other connections ending) within the
            // connect timeout, rather than fail the client.
            let left = .milliseconds(configuration.connectTimeout.milliseconds) - elapsed - Configuration.connectRetryPause
            if phase == .connecting, left > .zero {
                retryTimeout = left
                return [schedule(.connectRetry, Configuration.connectRetryPause)]
            }
            actions = abort(.connectFailed, detail)
        case .timedOut(let address):
            actions = abort(.connectTimeout, "no answer from \(address) within \(configuration.connectTimeout)")
        case .refused(let address):
            actions = abort(.connectRefused, "\(address) refused the connection")
        case .other(let detail):
            actions = abort(.connectFailed, detail)
        }
        // A client gone during the connect waited for it to end to free its slot.
        actions += finishIfDone()
        return actions
    }

    /// starttls: the plain-text exchange succeeded; the TLS handshake begins.
    mutating func upgraded() -> [Action] {
        switch phase {
        case .connecting:
            upgradeDone = true
            return []
        case .handshaking(.upgrading):
            upgradeDone = true
            phase = .handshaking(.tls)
            var actions = cancelTimers()
            actions.append(schedule(.handshake, configuration.connectTimeout))
            return actions
        default:
            return []
        }
    }

    /// starttls: the server cannot be upgraded.
    mutating func upgradeRefused(_ why: String) -> [Action] {
        upgradeDone = true
        return abort(.starttlsRefused, why)
    }

    /// The server is verified.
    mutating func handshakeCompleted(now: NIODeadline) -> [Action] {
        guard case .handshaking = phase else { return [] }
        phase = .relaying
        lastActivity = now
        var actions = cancelTimers()
        actions.append(.startRelaying)
        return actions
    }

    /// `.startRelaying` was carried out (what the client sent early was replayed).
    mutating func relayStarted() -> [Action] {
        guard isRelaying else { return [] }
        return [schedule(.idle, configuration.idleTimeout), .enableClientReads]
    }

    enum FirstBytesVerdict: Equatable {
        case admit
        /// Drop them: the connection is refused.
        case drop([Action])
    }

    /// The first bytes one side sends: a client that opens with a TLS ClientHello on the
    /// plain port already speaks TLS (mysql: the client side checked its bytes itself).
    mutating func firstBytes<Bytes: Collection>(from side: Side, _ bytes: Bytes) -> FirstBytesVerdict
    where Bytes.Element == UInt8 {
        guard side == .client, configuration.starttls != .mysql, Self.looksLikeClientHello(bytes) else { return .admit }
        return .drop(abort(.clientSpeaksTLS, clientSpeaksTLSDetail))
    }

    /// A TLS record header of type handshake (22) and major version 3.
    static func looksLikeClientHello<Bytes: Collection>(_ bytes: Bytes) -> Bool where Bytes.Element == UInt8 {
        var iterator = bytes.makeIterator()
        guard iterator.next() == 0x16 else { return false }
        guard let major = iterator.next() else { return true }
        return major == 0x03
    }

    /// Bytes went from `side` to the other side.
    mutating func transferred(from side: Side, bytes: Int, now: NIODeadline) {
        switch side {
        case .client: bytesUp += bytes
        case .upstream: bytesDown += bytes
        }
        lastActivity = now
    }

    /// `side` stopped sending: its input is closed.
    mutating func inputClosed(_ side: Side) -> [Action] {
        switch phase {
        case .relaying:
            phase = .halfClosed(side)
            return [.shutdownOutput(side.other)]
        case .halfClosed(let done):
            guard done != side else { return [] }
            // This was the last open direction: once what is still queued for the other
            // side has been written, both connections close (which passes the end on).
            phase = .flushing(side.other)
            record(.completed, nil)
            return [.flush(side.other)]
        case .checking, .sniffing, .connecting, .handshaking:
            return abort(.completed, side == .client ? "client closed before the upstream was ready" : nil)
        case .flushing, .draining, .closed:
            return []
        }
    }

    /// `.flush` is done (or failed): the connection is over.
    mutating func flushed() -> [Action] {
        guard case .flushing = phase else { return [] }
        phase = .draining
        return closeAll()
    }

    /// One side's channel went inactive (reset, or full close after both halves).
    mutating func sideClosed(_ side: Side) -> [Action] {
        if isRelaying {
            return abort(.completed, side == .client ? "client closed the connection" : "server closed the connection")
        }
        guard side == .client else { return [] }
        return abort(.completed, "client closed before the upstream was ready")
    }

    /// An error on one side, as `reason` (what the error means for the relay).
    /// `afterClientQuit`: mysql, the client sent COM_QUIT last.
    mutating func failed(_ side: Side, _ reason: RelayReason, _ detail: String, afterClientQuit: Bool = false) -> [Action] {
        if side == .upstream, isRelaying, afterClientQuit {
            // MySQL/MariaDB end a session after COM_QUIT with a bare close (no close_notify;
            // a reset if the gateway's own close_notify arrives after it): nothing was cut.
            return abort(.completed, "the server closed the session after the client's COM_QUIT")
        }
        return abort(reason, detail)
    }

    /// starttls: a refusal the client reads in its protocol's words whatever the reason
    /// (MySQL: a client asking for TLS, a malformed packet either way during authentication).
    mutating func refuseInProtocol(_ reason: RelayReason, _ detail: String) -> [Action] {
        if let starttls = configuration.starttls { setAnswer(.inProtocol(starttls, reason, detail: detail)) }
        return abort(reason, detail)
    }

    /// Anything that ends the connection at once: error, timeout, one side gone.
    mutating func abort(_ reason: RelayReason, _ detail: String?) -> [Action] {
        // The client must not mistake a reset or possibly truncated stream for a clean end.
        if reason.resetsClient { resetsClient = true }
        if self.reason == nil, reason.isUpstreamFailure { applyOnFailure(reason, detail) }
        record(reason, detail)
        guard isLive else { return [] }
        phase = .draining
        return closeAll()
    }

    /// The answer went out (or could not): FIN, then the client's time to read it.
    mutating func answerWritten() -> [Action] {
        guard phase != .closed else { return [] }
        return [schedule(.closeAfterAnswer, Configuration.closeAfterAnswer), .closeClientOutput]
    }

    mutating func timerFired(_ timer: Timer, now: NIODeadline) -> [Action] {
        guard isArmed(timer) else { return [] }
        armed &= ~(1 << timer.rawValue)
        switch timer {
        case .hostHeader:
            guard phase == .sniffing else { return [] }
            let why = "no whole request head within \(configuration.hostHeaderTimeout)"
            setAnswer(.http(status: 408, phrase: "Request Timeout", detail: why))
            return abort(.hostHeaderTimeout, why)
        case .connectRetry:
            guard phase == .connecting else { return [] }
            upstream = .connecting
            return [.connect(requestedHost: requestedHost, timeout: retryTimeout)]
        case .upgrade:
            guard phase == .handshaking(.upgrading) else { return [] }
            let name = configuration.starttls?.displayName ?? "starttls"
            return abort(.starttlsTimeout, "no complete \(name) upgrade exchange within \(configuration.connectTimeout)")
        case .handshake:
            guard case .handshaking = phase else { return [] }
            return abort(.handshakeTimeout, "no TLS handshake within \(configuration.connectTimeout)")
        case .idle:
            guard isRelaying else { return [] }
            let limit = TimeAmount.milliseconds(configuration.idleTimeout.milliseconds)
            let idleFor = now - lastActivity
            if idleFor >= limit {
                return abort(.idleTimeout, "no data either way for \(configuration.idleTimeout)")
            }
            return [schedule(.idle, limit - idleFor)]
        case .closeAfterAnswer, .closeAfterRefusal:
            return [.closeClient]
        }
    }

    /// A channel is gone (its close completed).
    mutating func channelClosed(_ side: Side) -> [Action] {
        switch side {
        case .client: clientOpen = false
        case .upstream: upstream = .gone
        }
        return finishIfDone()
    }

    // MARK: helpers

    private var clientSpeaksTLSDetail: String {
        "the client sent a TLS ClientHello on plain port \(configuration.matchPort): it already speaks TLS, and the gateway does not wrap TLS in TLS"
    }

    private mutating func record(_ reason: RelayReason, _ detail: String?) {
        if self.reason == nil {
            self.reason = reason
            self.detail = detail
        }
    }

    private mutating func setAnswer(_ answer: Answer) {
        if self.answer == nil { self.answer = answer }
    }

    private mutating func badRequest(_ why: String) -> [Action] {
        setAnswer(.http(status: 400, phrase: "Bad Request", detail: why))
        return abort(.badRequest, why)
    }

    private mutating func startConnecting() -> [Action] {
        phase = .connecting
        upstream = .connecting
        return [.connect(requestedHost: requestedHost, timeout: .milliseconds(configuration.connectTimeout.milliseconds))]
    }

    /// The policy's `on_failure`, for the first reason when it is an upstream failure.
    private mutating func applyOnFailure(_ reason: RelayReason, _ detail: String?) {
        switch configuration.onFailure {
        case .close:
            if let starttls = configuration.starttls { setAnswer(.inProtocol(starttls, reason, detail: detail ?? "")) }
        case .reset:
            resetsClient = true
        case .http502:
            resetsClient = false
            setAnswer(.http(status: 502, phrase: "Bad Gateway", detail: "\(reason): \(detail ?? "")"))
        }
    }

    private mutating func schedule(_ timer: Timer, _ span: TimeSpan) -> Action {
        schedule(timer, .milliseconds(span.milliseconds))
    }

    private mutating func schedule(_ timer: Timer, _ delay: TimeAmount) -> Action {
        armed |= 1 << timer.rawValue
        return .schedule(timer, delay)
    }

    /// Cancels every running timer.
    private mutating func cancelTimers() -> [Action] {
        guard armed != 0 else { return [] }
        let running = Timer.allCases.filter(isArmed)
        armed = 0
        return running.map { .cancel($0) }
    }

    /// Ends both connections: the upstream closes (or its connect is cancelled: closing its
    /// channel closes the socket, no SYN retries until connect_timeout), and the client gets
    /// its answer, a FIN before the close, a RST, or a plain close.
    private mutating func closeAll() -> [Action] {
        var actions = cancelTimers()
        if upstream == .connecting || upstream == .open { actions.append(.closeUpstream) }
        if let answer {
            actions.append(.answerClient(answer))
        } else if !resetsClient, let reason, reason.result != .ok {
            // A refusal or failure: FIN first, so the client sees a plain close even when its
            // request is still unread (closing with unread bytes would send a RST at once).
            actions.append(schedule(.closeAfterRefusal, Configuration.closeAfterRefusal))
            actions.append(.closeClientOutput)
        } else {
            actions.append(resetsClient ? .resetClient : .closeClient)
        }
        return actions
    }

    /// The slot is held until nothing of the connection is left: a pending connect counts
    /// against max_connections like a relayed connection.
    private mutating func finishIfDone() -> [Action] {
        guard !clientOpen, upstream != .connecting, upstream != .open, phase != .closed else { return [] }
        phase = .closed
        record(.completed, nil)
        var actions = cancelTimers()
        if holdsSlot {
            holdsSlot = false
            actions.append(.releaseSlot)
        }
        actions.append(.logOutcome(reason ?? .completed, detail: detail))
        return actions
    }
}

extension RelayReason {
    /// The client's connection ends with RST: the server reset or cut the stream, or
    /// refused the connect.
    var resetsClient: Bool { self == .connectRefused || self == .upstreamTruncated || self == .upstreamError }
}
