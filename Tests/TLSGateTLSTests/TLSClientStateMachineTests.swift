import Testing

@testable import TLSGateTLS

@Suite struct TLSClientStateMachineTests {
    @Test func writesWaitForTheHandshake() {
        var m = TLSClientStateMachine()
        #expect(m.write() == .buffer)
        #expect(m.activate() == .startHandshake)
        #expect(m.activate() == .none)
        #expect(m.write() == .buffer)
        #expect(m.handshakeCompleted() == .fireCompletedAndFlushPending)
        #expect(m.write() == .encrypt)
    }

    @Test func halfClosesAreIndependent() {
        var m = TLSClientStateMachine()
        _ = m.activate()
        _ = m.handshakeCompleted()
        #expect(m.closeOutput() == .sendCloseNotifyAndShutdownOutput)
        #expect(m.closeOutput() == .none)
        #expect(m.write() == .fail)
        #expect(m.closeNotifyReceived() == .fireInputClosed)
        #expect(m.closeNotifyReceived() == .none)
        #expect(m.transportEOF() == .none)
    }

    @Test func eofWithoutCloseNotify() {
        var m = TLSClientStateMachine()
        _ = m.activate()
        #expect(m.transportEOF() == .failClosedDuringHandshake)
        _ = m.handshakeCompleted()
        #expect(m.transportEOF() == .failUncleanShutdown)
    }

    @Test func failureHappensOnce() {
        var m = TLSClientStateMachine()
        _ = m.activate()
        #expect(m.failed() == .fireErrorAndClose)
        #expect(m.failed() == .none)
        #expect(m.handshakeCompleted() == .none)
        #expect(m.write() == .fail)
    }

    @Test func closeSendsCloseNotifyOnlyWhenOutputOpen() {
        var a = TLSClientStateMachine()
        _ = a.activate()
        _ = a.handshakeCompleted()
        #expect(a.close() == .sendCloseNotifyThenClose)
        var b = TLSClientStateMachine()
        _ = b.activate()
        _ = b.handshakeCompleted()
        _ = b.closeOutput()
        #expect(b.close() == .close)
        var c = TLSClientStateMachine()
        _ = c.activate()
        #expect(c.close() == .close)
    }

    @Test func inboundBytesAreDroppedOnceInputIsOver() {
        var m = TLSClientStateMachine()
        #expect(m.inbound() == .discard)
        _ = m.activate()
        #expect(m.inbound() == .continueHandshake)
        _ = m.handshakeCompleted()
        #expect(m.inbound() == .decrypt)
        _ = m.closeOutput()
        #expect(m.inbound() == .decrypt)  // our close_notify does not end the server's stream
        _ = m.closeNotifyReceived()
        #expect(m.inbound() == .discard)
        var f = TLSClientStateMachine()
        _ = f.activate()
        _ = f.failed()
        #expect(f.inbound() == .discard)
    }
}
