/// The decisions of `TLSClientHandler`, kept apart from NIO so they can be tested alone.
///
/// Input and output close independently after the handshake: the server's close_notify
/// closes our input; our close_notify (sent when the relay half-closes) closes our output.
struct TLSClientStateMachine {
    enum State: Equatable {
        case idle
        case handshaking
        case active(inputClosed: Bool, outputClosed: Bool)
        case failed
        case closed
    }

    private(set) var state: State = .idle

    enum ActivateAction: Equatable { case startHandshake, none }
    mutating func activate() -> ActivateAction {
        guard state == .idle else { return .none }
        state = .handshaking
        return .startHandshake
    }

    enum HandshakeAction: Equatable { case fireCompletedAndFlushPending, none }
    mutating func handshakeCompleted() -> HandshakeAction {
        guard state == .handshaking else { return .none }
        state = .active(inputClosed: false, outputClosed: false)
        return .fireCompletedAndFlushPending
    }

    enum FailAction: Equatable { case fireErrorAndClose, none }
    mutating func failed() -> FailAction {
        switch state {
        case .failed, .closed: return .none
        default:
            state = .failed
            return .fireErrorAndClose
        }
    }

    enum CloseNotifyAction: Equatable { case fireInputClosed, none }
    mutating func closeNotifyReceived() -> CloseNotifyAction {
        guard case .active(let inputClosed, let outputClosed) = state, !inputClosed else { return .none }
        state = .active(inputClosed: true, outputClosed: outputClosed)
        return .fireInputClosed
    }

    enum EOFAction: Equatable {
        /// TCP EOF before the handshake ended.
        case failClosedDuringHandshake
        /// TCP EOF without close_notify: the stream may have been truncated.
        case failUncleanShutdown
        case none
    }
    mutating func transportEOF() -> EOFAction {
        switch state {
        case .idle, .handshaking: return .failClosedDuringHandshake
        case .active(let inputClosed, _): return inputClosed ? .none : .failUncleanShutdown
        case .failed, .closed: return .none
        }
    }

    /// What to do with ciphertext from the server.
    enum InboundAction: Equatable {
        case continueHandshake
        case decrypt
        /// After the server's close_notify, or after a failure or close: nothing more is
        /// read, so the bytes are dropped at once rather than kept (memory stays bounded
        /// whatever the server keeps sending).
        case discard
    }
    func inbound() -> InboundAction {
        switch state {
        case .handshaking: return .continueHandshake
        case .active(inputClosed: false, _): return .decrypt
        case .idle, .active(inputClosed: true, _), .failed, .closed: return .discard
        }
    }

    enum WriteAction: Equatable { case buffer, encrypt, fail }
    func write() -> WriteAction {
        switch state {
        case .idle, .handshaking: return .buffer
        case .active(_, let outputClosed): return outputClosed ? .fail : .encrypt
        case .failed, .closed: return .fail
        }
    }

    enum CloseOutputAction: Equatable { case sendCloseNotifyAndShutdownOutput, closeAll, none }
    mutating func closeOutput() -> CloseOutputAction {
        switch state {
        case .active(let inputClosed, let outputClosed):
            if outputClosed { return .none }
            state = .active(inputClosed: inputClosed, outputClosed: true)
            return .sendCloseNotifyAndShutdownOutput
        case .idle, .handshaking:
            // Nothing was sent yet: half-closing a connection that never carried data
            // is closing it.
            state = .closed
            return .closeAll
        case .failed, .closed:
            return .none
        }
    }

    enum CloseAction: Equatable { case sendCloseNotifyThenClose, close }
    mutating func close() -> CloseAction {
        defer { state = .closed }
        if case .active(_, let outputClosed) = state, !outputClosed { return .sendCloseNotifyThenClose }
        return .close
    }
}
