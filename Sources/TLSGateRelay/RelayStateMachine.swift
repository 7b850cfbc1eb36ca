/// The life of one relayed connection, kept apart from NIO so it is tested alone.
///
/// Half-close is carried across: when the client finishes sending (TCP FIN) the gateway
/// sends close_notify and FIN upstream but keeps reading the server's answer; when the
/// server sends close_notify the gateway sends FIN to the client but keeps relaying what
/// the client still sends. When both directions have ended, both connections close.
struct RelayStateMachine {
    enum Side: Sendable, Equatable {
        case client
        case upstream
    }

    enum State: Equatable {
        /// Reading the original destination and checking it against the policy.
        case checking
        /// TCP connect to the upstream server.
        case connecting
        /// TLS handshake and certificate check; no client byte has been read yet.
        case handshaking
        /// Bytes flow; each flag says that direction has ended.
        case relaying(clientDone: Bool, upstreamDone: Bool)
        case closed
    }

    private(set) var state: State = .checking
    /// The first reason recorded wins: later ones are consequences.
    private(set) var reason: RelayReason?
    private(set) var detail: String?

    mutating func record(_ reason: RelayReason, _ detail: String?) {
        if self.reason == nil {
            self.reason = reason
            self.detail = detail
        }
    }

    enum CheckAction: Equatable { case connect, refuse }
    mutating func checked(allowed: Bool) -> CheckAction {
        guard state == .checking else { return .refuse }
        state = allowed ? .connecting : .closed
        return allowed ? .connect : .refuse
    }

    mutating func connected() -> Bool {
        guard state == .connecting else { return false }
        state = .handshaking
        return true
    }

    enum HandshakeAction: Equatable { case startRelaying, ignore }
    mutating func handshakeCompleted() -> HandshakeAction {
        guard state == .handshaking else { return .ignore }
        state = .relaying(clientDone: false, upstreamDone: false)
        return .startRelaying
    }

    enum InputClosedAction: Equatable {
        /// Pass the end of this direction to the other side (FIN / close_notify).
        case shutdownOutput(of: Side)
        /// This was the last open direction: pass its end on, and once what is still
        /// queued for the other side has been written, close both connections.
        case shutdownOutputThenCloseAll(of: Side)
        /// Nothing was relayed yet: close both connections now.
        case closeAll
        case none
    }

    /// `side` stopped sending: its input is closed.
    mutating func inputClosed(_ side: Side) -> InputClosedAction {
        switch state {
        case .relaying(var clientDone, var upstreamDone):
            switch side {
            case .client:
                if clientDone { return .none }
                clientDone = true
            case .upstream:
                if upstreamDone { return .none }
                upstreamDone = true
            }
            if clientDone && upstreamDone {
                state = .closed
                record(.completed, nil)
                return .shutdownOutputThenCloseAll(of: side == .client ? .upstream : .client)
            }
            state = .relaying(clientDone: clientDone, upstreamDone: upstreamDone)
            return .shutdownOutput(of: side == .client ? .upstream : .client)
        case .checking, .connecting, .handshaking:
            // The client gave up before the upstream was ready.
            state = .closed
            record(.completed, side == .client ? "client closed before the upstream was ready" : nil)
            return .closeAll
        case .closed:
            return .none
        }
    }

    /// Anything that ends the connection at once: error, timeout, one side gone.
    mutating func abort(_ reason: RelayReason, _ detail: String?) -> Bool {
        record(reason, detail)
        if state == .closed { return false }
        state = .closed
        return true
    }

    var isRelaying: Bool {
        if case .relaying = state { return true }
        return false
    }
}
