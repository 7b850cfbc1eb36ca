import Testing

@testable import TLSGateRelay

@Suite struct RelayStateMachineTests {
    private func relaying() -> RelayStateMachine {
        var m = RelayStateMachine()
        #expect(m.checked(allowed: true) == .connect)
        let connected = m.connected()
        #expect(connected)
        #expect(m.handshakeCompleted() == .startRelaying)
        return m
    }

    @Test func clientFinIsCarriedUpstreamThenServerFinishes() {
        var m = relaying()
        #expect(m.inputClosed(.client) == .shutdownOutput(of: .upstream))
        #expect(m.isRelaying)
        #expect(m.inputClosed(.client) == .none)
        #expect(m.inputClosed(.upstream) == .shutdownOutputThenCloseAll(of: .client))
        #expect(m.reason == .completed)
        #expect(!m.isRelaying)
    }

    @Test func serverCloseNotifyIsCarriedToTheClient() {
        var m = relaying()
        #expect(m.inputClosed(.upstream) == .shutdownOutput(of: .client))
        #expect(m.inputClosed(.client) == .shutdownOutputThenCloseAll(of: .upstream))
    }

    @Test func refusalRecordsItsReasonAndNeverConnects() {
        var m = RelayStateMachine()
        #expect(m.checked(allowed: false) == .refuse)
        let connected = m.connected()
        #expect(!connected)
        #expect(m.handshakeCompleted() == .ignore)
    }

    @Test func firstReasonWins() {
        var m = relaying()
        let first = m.abort(.upstreamTruncated, "server closed TCP without close_notify")
        let second = m.abort(.completed, "client closed")
        #expect(first)
        #expect(!second)
        #expect(m.reason == .upstreamTruncated)
        #expect(m.detail == "server closed TCP without close_notify")
    }

    @Test func clientLeavingBeforeUpstreamIsReadyClosesAll() {
        var m = RelayStateMachine()
        _ = m.checked(allowed: true)
        _ = m.connected()
        #expect(m.inputClosed(.client) == .closeAll)
        #expect(m.handshakeCompleted() == .ignore)
    }

    @Test func reasonsMapToResults() {
        #expect(RelayReason.completed.result == "ok")
        #expect(RelayReason.idleTimeout.result == "ok")
        #expect(RelayReason.notRedirected.result == "refused")
        #expect(RelayReason.destinationIsGateway.result == "refused")
        #expect(RelayReason.tlsVerifyFailed.result == "failed")
        #expect(RelayReason.connectRefused.description == "connect_refused")
    }
}
