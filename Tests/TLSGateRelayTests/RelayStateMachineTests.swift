import NIOCore
import TLSGatePolicy
import Testing

@testable import TLSGateRelay

/// `RelayStateMachine` without sockets: every phase, the inputs each phase may see (the
/// unexpected ones included), every timer, double events, and the one-time outcome.
@Suite struct RelayStateMachineTests {
    typealias M = RelayStateMachine
    static let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000_000)
    static let connectTimeout = TimeAmount.seconds(5)
    static let idle = TimeAmount.seconds(300)

    /// Accepted and checked: the upstream connect was asked for.
    private func connecting(_ configuration: M.Configuration = .init()) -> M {
        var m = M(configuration: configuration)
        #expect(m.accepted(slot: true) == [])
        #expect(m.phase == .checking)
        var actions = m.destinationChecked(.allow)
        if let proto = configuration.starttls, [.mysql, .postgres, .postgresDirect].contains(proto) {
            #expect(actions == [.prepareClient(proto)])
            actions = m.clientPrepared()
        }
        #expect(actions == [.connect(requestedHost: nil, timeout: Self.connectTimeout)])
        #expect(m.phase == .connecting)
        #expect(m.upstream == .connecting)
        return m
    }

    private func relaying(_ configuration: M.Configuration = .init()) -> M {
        var m = connecting(configuration)
        if configuration.starttls != nil {
            #expect(m.connected() == [.schedule(.upgrade, Self.connectTimeout)])
            #expect(m.upgraded() == [.cancel(.upgrade), .schedule(.handshake, Self.connectTimeout)])
        } else {
            #expect(m.connected() == [.schedule(.handshake, Self.connectTimeout)])
        }
        #expect(m.phase == .handshaking(.tls))
        #expect(m.handshakeCompleted(now: Self.t0) == [.cancel(.handshake), .startRelaying])
        #expect(m.relayStarted() == [.schedule(.idle, Self.idle), .enableClientReads])
        #expect(m.phase == .relaying)
        return m
    }

    /// Both channels go; the outcome is logged once, the slot released once.
    private func finish(_ m: inout M, expecting reason: RelayReason, _ detail: String?) {
        var actions = m.channelClosed(.client)
        if m.upstream == .open { actions += m.channelClosed(.upstream) }
        #expect(actions.filter { $0 == .releaseSlot }.count == 1)
        #expect(actions.last == .logOutcome(reason, detail: detail))
        #expect(m.phase == .closed)
        #expect(m.channelClosed(.client) == [])
        #expect(m.channelClosed(.upstream) == [])
        #expect(m.abort(.clientError, "late") == [])
        #expect(m.reason == reason)
    }

    // MARK: the plain path

    @Test func aRelayedConnectionGoesThroughEveryPhase() {
        var m = relaying()
        m.transferred(from: .client, bytes: 10, now: Self.t0)
        m.transferred(from: .upstream, bytes: 20, now: Self.t0)
        #expect(m.bytesUp == 10 && m.bytesDown == 20)
        #expect(m.inputClosed(.client) == [.shutdownOutput(.upstream)])
        #expect(m.phase == .halfClosed(.client))
        #expect(m.inputClosed(.upstream) == [.flush(.client)])
        #expect(m.phase == .flushing(.client))
        #expect(m.flushed() == [.cancel(.idle), .closeUpstream, .closeClient])
        #expect(m.phase == .draining)
        #expect(m.sideClosed(.upstream) == [])
        #expect(m.channelClosed(.upstream) == [])
        #expect(m.channelClosed(.client) == [.releaseSlot, .logOutcome(.completed, detail: nil)])
        #expect(m.phase == .closed)
    }

    @Test func serverCloseNotifyIsCarriedToTheClient() {
        var m = relaying()
        #expect(m.inputClosed(.upstream) == [.shutdownOutput(.client)])
        #expect(m.phase == .halfClosed(.upstream))
        #expect(m.isRelaying)
        #expect(m.inputClosed(.upstream) == [])
        #expect(m.inputClosed(.client) == [.flush(.upstream)])
        #expect(m.inputClosed(.client) == [])
        #expect(m.flushed() == [.cancel(.idle), .closeUpstream, .closeClient])
        #expect(m.flushed() == [])
    }

    @Test func eitherSideVanishingEndsTheRelay() {
        var a = relaying()
        #expect(a.sideClosed(.upstream) == [.cancel(.idle), .closeUpstream, .closeClient])
        #expect(a.sideClosed(.upstream) == [])
        #expect(a.sideClosed(.client) == [])
        #expect(a.detail == "server closed the connection")
        finish(&a, expecting: .completed, "server closed the connection")

        var b = relaying()
        _ = b.inputClosed(.client)
        #expect(b.sideClosed(.client) == [.cancel(.idle), .closeUpstream, .closeClient])
        #expect(b.detail == "client closed the connection")
    }

    @Test func anErrorWhileFlushingKeepsCompletedButResetsTheClient() {
        var m = relaying()
        _ = m.inputClosed(.upstream)
        _ = m.inputClosed(.client)
        #expect(m.failed(.upstream, .upstreamError, "connection reset by peer") == [])
        #expect(m.reason == .completed)
        #expect(m.flushed() == [.cancel(.idle), .closeUpstream, .resetClient])
    }

    // MARK: refusals before any upstream work

    @Test func aRefusedDestinationClosesAtOnceAndNeverConnects() {
        var m = M(configuration: .init())
        _ = m.accepted(slot: true)
        #expect(m.destinationChecked(.refuse(.notRedirected, "no original destination")) == [.closeClient])
        #expect(m.phase == .draining)
        #expect(m.destinationChecked(.allow) == [])
        #expect(m.handshakeCompleted(now: Self.t0) == [])
        #expect(m.relayStarted() == [])
        finish(&m, expecting: .notRedirected, "no original destination")
    }

    @Test func overTheLimitNoSlotIsHeldOrReleased() {
        var m = M(configuration: .init(maxConnections: 3))
        #expect(m.accepted(slot: false) == [.closeClient])
        #expect(!m.holdsSlot)
        #expect(m.destinationChecked(.allow) == [])
        #expect(m.channelClosed(.client) == [.logOutcome(.maxConnections, detail: "the policy's max_connections (3) is reached")])
    }

    @Test func aClientGoneWhileCheckingEndsQuietly() {
        var m = M(configuration: .init())
        _ = m.accepted(slot: true)
        #expect(m.sideClosed(.client) == [.closeClient])
        #expect(m.destinationChecked(.allow) == [])
        #expect(m.destinationChecked(.refuse(.notRedirected, "x")) == [])
        finish(&m, expecting: .completed, "client closed before the upstream was ready")
    }

    @Test func setupFailureRefusesOnce() {
        var m = M(configuration: .init())
        _ = m.accepted(slot: true)
        #expect(m.refuse(.clientError, "cannot set up") == [.closeClient])
        #expect(m.refuse(.clientError, "again") == [])
        finish(&m, expecting: .clientError, "cannot set up")
    }

    // MARK: sniffing (http-host)

    static let sniffing = M.Configuration(sniffsHost: true, allowedNames: ["*.example.com", "api.example.org"])

    private func sniffer() -> M {
        var m = M(configuration: Self.sniffing)
        _ = m.accepted(slot: true)
        #expect(m.destinationChecked(.allow) == [.schedule(.hostHeader, .seconds(5)), .startSniffing])
        #expect(m.phase == .sniffing)
        #expect(m.sniffing)
        return m
    }

    /// Feeds `bytes` all at once, and one at a time: both must decide the same.
    private func sniffBothWays(_ bytes: [UInt8]) -> [M.Action] {
        var whole = sniffer()
        let atOnce = whole.hostBytes(bytes)
        var single = sniffer()
        var oneByOne: [M.Action] = []
        for byte in bytes { oneByOne += single.hostBytes([byte]) }
        #expect(atOnce == oneByOne)
        #expect(whole.phase == single.phase)
        #expect(whole.reason == single.reason)
        #expect(whole.answer == single.answer)
        return atOnce
    }

    @Test func anAllowedHostConnectsWithThatName() {
        let actions = sniffBothWays(Array("GET / HTTP/1.1\r\nHost: www.example.com:8080\r\n\r\n".utf8))
        #expect(actions == [.cancel(.hostHeader), .connect(requestedHost: "www.example.com", timeout: Self.connectTimeout)])
        var m = sniffer()
        _ = m.hostBytes(Array("GET / HTTP/1.1\r\nHost: api.example.org\r\n\r\n".utf8))
        #expect(m.requestedHost == "api.example.org")
        #expect(m.phase == .connecting)
        #expect(!m.sniffing)
        #expect(m.hostBytes(Array("more".utf8)) == [])
        #expect(m.timerFired(.hostHeader, now: Self.t0) == [])
    }

    @Test func aHostNotAllowedGets403() {
        let actions = sniffBothWays(Array("GET / HTTP/1.1\r\nHost: evil.test\r\n\r\n".utf8))
        let why = "Host \"evil.test\" is not in the policy's allowed_names"
        #expect(actions == [.cancel(.hostHeader), .answerClient(.http(status: 403, phrase: "Forbidden", detail: why))])
    }

    @Test func aMalformedHeadGets400() {
        let actions = sniffBothWays(Array("GET / HTTP/1.1\r\nHost: a.example.com\r\nHost: b.example.com\r\n\r\n".utf8))
        guard case .answerClient(.http(400, "Bad Request", _)) = actions.last else {
            Issue.record("no 400: \(actions)")
            return
        }
    }

    @Test func aClientHelloOnThePlainPortIsRefusedWithoutAnAnswer() {
        let actions = sniffBothWays([0x16, 0x03, 0x01, 0x00, 0x05])
        #expect(actions == [.cancel(.hostHeader), .schedule(.closeAfterRefusal, .milliseconds(250)), .closeClientOutput])
    }

    @Test func aClientClosingBeforeTheHeadGets400() {
        var m = sniffer()
        _ = m.hostBytes(Array("GET / HTTP/1.1\r\n".utf8))
        let why = "the client closed before sending a whole request head"
        #expect(m.hostInputClosed() == [.cancel(.hostHeader), .answerClient(.http(status: 400, phrase: "Bad Request", detail: why))])
        #expect(m.hostInputClosed() == [])
        #expect(m.reason == .badRequest)
    }

    @Test func noHeadInTimeGets408ThenTheCloseDelay() {
        var m = sniffer()
        let why = "no whole request head within 5s"
        #expect(m.timerFired(.hostHeader, now: Self.t0) == [.answerClient(.http(status: 408, phrase: "Request Timeout", detail: why))])
        #expect(m.timerFired(.hostHeader, now: Self.t0) == [])
        #expect(m.answerWritten() == [.schedule(.closeAfterAnswer, .milliseconds(500)), .closeClientOutput])
        #expect(m.timerFired(.closeAfterAnswer, now: Self.t0) == [.closeClient])
        finish(&m, expecting: .hostHeaderTimeout, why)
        #expect(m.answerWritten() == [])
    }

    // MARK: connecting

    @Test func connectFailuresAndOnFailure() {
        var timeout = connecting()
        #expect(
            timeout.connectFailed(.timedOut(address: "198.18.0.1:443"), elapsed: .seconds(5)) == [
                .schedule(.closeAfterRefusal, .milliseconds(250)), .closeClientOutput,
            ])
        #expect(timeout.detail == "no answer from 198.18.0.1:443 within 5s")
        #expect(timeout.timerFired(.closeAfterRefusal, now: Self.t0) == [.closeClient])
        finish(&timeout, expecting: .connectTimeout, "no answer from 198.18.0.1:443 within 5s")

        // A refused connect is passed on as a reset...
        var refused = connecting()
        #expect(refused.connectFailed(.refused(address: "198.18.0.1:443"), elapsed: .zero) == [.resetClient])
        // ...unless the policy answers with 502.
        var answered = connecting(.init(onFailure: .http502))
        let why = "connect_refused: 198.18.0.1:443 refused the connection"
        #expect(
            answered.connectFailed(.refused(address: "198.18.0.1:443"), elapsed: .zero) == [
                .answerClient(.http(status: 502, phrase: "Bad Gateway", detail: why))
            ])
        #expect(!answered.resetsClient)
        var reset = connecting(.init(onFailure: .reset))
        #expect(reset.connectFailed(.other("no route"), elapsed: .zero) == [.resetClient])
        #expect(reset.reason == .connectFailed)
    }

    @Test func outOfDescriptorsTheConnectIsRetriedWithinTheTimeout() {
        var m = connecting()
        #expect(m.connectFailed(.resourceExhausted("EMFILE"), elapsed: .seconds(1)) == [.schedule(.connectRetry, .milliseconds(200))])
        #expect(m.phase == .connecting)
        #expect(m.upstream == .none)
        // The next attempt gets what is left of connect_timeout, not all of it again.
        #expect(m.timerFired(.connectRetry, now: Self.t0) == [.connect(requestedHost: nil, timeout: .milliseconds(3800))])
        #expect(m.upstream == .connecting)
        // No time left: it fails.
        #expect(
            m.connectFailed(.resourceExhausted("EMFILE"), elapsed: .milliseconds(4900)) == [
                .schedule(.closeAfterRefusal, .milliseconds(250)), .closeClientOutput,
            ])
        #expect(m.reason == .connectFailed)
        #expect(m.detail == "EMFILE")
    }

    @Test func aClientLeavingDuringTheRetryPauseCancelsIt() {
        var m = connecting()
        _ = m.connectFailed(.resourceExhausted("EMFILE"), elapsed: .zero)
        #expect(m.sideClosed(.client) == [.cancel(.connectRetry), .closeClient])
        #expect(m.timerFired(.connectRetry, now: Self.t0) == [])
        finish(&m, expecting: .completed, "client closed before the upstream was ready")
    }

    @Test func aPendingConnectHoldsTheSlotUntilItEnds() {
        var failed = connecting()
        #expect(failed.sideClosed(.client) == [.closeUpstream, .closeClient])
        #expect(failed.channelClosed(.client) == [])
        #expect(failed.holdsSlot)
        // Closing its channel cancels the connect, which ends the connection.
        #expect(
            failed.connectFailed(.other("cancelled"), elapsed: .zero) == [
                .releaseSlot, .logOutcome(.completed, detail: "client closed before the upstream was ready"),
            ])
        #expect(!failed.holdsSlot)

        var raced = connecting()
        _ = raced.sideClosed(.client)
        _ = raced.channelClosed(.client)
        #expect(raced.connected() == [.closeUpstream])
        #expect(raced.channelClosed(.upstream) == [.releaseSlot, .logOutcome(.completed, detail: "client closed before the upstream was ready")])
    }

    // MARK: handshaking

    @Test func handshakeTimerAndErrors() {
        var m = connecting()
        _ = m.connected()
        #expect(m.timerFired(.idle, now: Self.t0) == [])
        #expect(m.timerFired(.handshake, now: Self.t0) == [.closeUpstream, .schedule(.closeAfterRefusal, .milliseconds(250)), .closeClientOutput])
        #expect(m.detail == "no TLS handshake within 5s")
        #expect(m.handshakeCompleted(now: Self.t0) == [])

        var verify = connecting()
        _ = verify.connected()
        #expect(verify.failed(.upstream, .tlsVerifyFailed, "certificate has expired").contains(.closeUpstream))
        #expect(verify.failed(.upstream, .tlsHandshakeFailed, "second") == [])
        #expect(verify.reason == .tlsVerifyFailed)
        #expect(verify.sideClosed(.upstream) == [])
        finish(&verify, expecting: .tlsVerifyFailed, "certificate has expired")
    }

    @Test func theUpstreamClosingDuringTheHandshakeWaitsForItsError() {
        var m = connecting()
        _ = m.connected()
        #expect(m.sideClosed(.upstream) == [])
        #expect(m.phase == .handshaking(.tls))
    }

    @Test func aClientClosingBeforeTheServerIsVerifiedEndsBoth() {
        var m = connecting()
        _ = m.connected()
        #expect(m.inputClosed(.client) == [.cancel(.handshake), .closeUpstream, .closeClient])
        #expect(m.handshakeCompleted(now: Self.t0) == [])
        finish(&m, expecting: .completed, "client closed before the upstream was ready")
    }

    // MARK: starttls

    @Test func starttlsUpgradeThenHandshakeEachWithItsTimer() {
        var m = connecting(.init(starttls: .smtp))
        #expect(m.connected() == [.schedule(.upgrade, Self.connectTimeout)])
        #expect(m.phase == .handshaking(.upgrading))
        #expect(m.timerFired(.handshake, now: Self.t0) == [])
        #expect(m.upgraded() == [.cancel(.upgrade), .schedule(.handshake, Self.connectTimeout)])
        #expect(m.phase == .handshaking(.tls))
        #expect(m.upgraded() == [])
        #expect(m.timerFired(.upgrade, now: Self.t0) == [])
        #expect(m.handshakeCompleted(now: Self.t0) == [.cancel(.handshake), .startRelaying])
    }

    @Test func starttlsFailuresAreRefusedInTheProtocolsWords() {
        var slow = connecting(.init(starttls: .imap))
        _ = slow.connected()
        let why = "no complete IMAP upgrade exchange within 5s"
        #expect(
            slow.timerFired(.upgrade, now: Self.t0) == [
                .closeUpstream, .answerClient(.inProtocol(.imap, .starttlsTimeout, detail: why)),
            ])

        var refused = connecting(.init(starttls: .smtp))
        _ = refused.connected()
        #expect(
            refused.upgradeRefused("no STARTTLS in EHLO") == [
                .cancel(.upgrade), .closeUpstream, .answerClient(.inProtocol(.smtp, .starttlsRefused, detail: "no STARTTLS in EHLO")),
            ])
        #expect(refused.upgraded() == [])

        // on_failure = "reset" resets even a starttls client.
        var reset = connecting(.init(starttls: .pop3, onFailure: .reset))
        _ = reset.connected()
        #expect(reset.upgradeRefused("-ERR") == [.cancel(.upgrade), .closeUpstream, .resetClient])
    }

    @Test func mysqlAndPostgresPrepareTheClientSideFirst() {
        for proto in [StartTLSProtocol.mysql, .postgres, .postgresDirect] {
            var m = M(configuration: .init(starttls: proto))
            _ = m.accepted(slot: true)
            #expect(m.destinationChecked(.allow) == [.prepareClient(proto)])
            #expect(m.phase == .checking)
            #expect(m.clientPrepared() == [.connect(requestedHost: nil, timeout: Self.connectTimeout)])
            #expect(m.clientPrepared() == [])
        }
        var failed = M(configuration: .init(starttls: .mysql))
        _ = failed.accepted(slot: true)
        _ = failed.destinationChecked(.allow)
        #expect(failed.abort(.clientError, "cannot set up") == [.schedule(.closeAfterRefusal, .milliseconds(250)), .closeClientOutput])
        #expect(failed.clientPrepared() == [])
    }

    @Test func anUpgradeDoneBeforeTheConnectIsReportedGoesStraightToTLS() {
        var m = connecting(.init(starttls: .postgresDirect))
        #expect(m.upgraded() == [])
        #expect(m.connected() == [.schedule(.handshake, Self.connectTimeout)])
        #expect(m.phase == .handshaking(.tls))
    }

    @Test func mysqlRefusalsAnswerInProtocolOnce() {
        var m = connecting(.init(starttls: .mysql))
        _ = m.connected()
        #expect(
            m.refuseInProtocol(.clientSpeaksTLS, "the client asked for TLS") == [
                .cancel(.upgrade), .closeUpstream, .answerClient(.inProtocol(.mysql, .clientSpeaksTLS, detail: "the client asked for TLS")),
            ])
        #expect(m.refuseInProtocol(.clientError, "second") == [])
        #expect(m.answer == .inProtocol(.mysql, .clientSpeaksTLS, detail: "the client asked for TLS"))
    }

    @Test func mysqlServerClosingAfterComQuitIsANormalEnd() {
        var m = relaying(.init(starttls: .mysql))
        #expect(
            m.failed(.upstream, .upstreamTruncated, "no close_notify", afterClientQuit: true) == [
                .cancel(.idle), .closeUpstream, .closeClient,
            ])
        #expect(m.reason == .completed)
        #expect(!m.resetsClient)
        // Without the quit, the same is a truncation, and the client is reset.
        var cut = relaying(.init(starttls: .mysql))
        #expect(cut.failed(.upstream, .upstreamTruncated, "no close_notify") == [.cancel(.idle), .closeUpstream, .resetClient])
        // Before relaying, the quit flag means nothing.
        var early = connecting(.init(starttls: .mysql))
        _ = early.connected()
        _ = early.failed(.upstream, .tlsHandshakeFailed, "bad", afterClientQuit: true)
        #expect(early.reason == .tlsHandshakeFailed)
    }

    // MARK: relaying

    @Test func theFirstReasonWins() {
        var m = relaying()
        #expect(m.failed(.upstream, .upstreamTruncated, "server closed TCP without close_notify") == [.cancel(.idle), .closeUpstream, .resetClient])
        #expect(m.failed(.upstream, .upstreamError, "again") == [])
        #expect(m.sideClosed(.client) == [])
        #expect(m.sideClosed(.client) == [])
        #expect(m.inputClosed(.client) == [])
        #expect(m.timerFired(.idle, now: Self.t0 + Self.idle) == [])
        #expect(m.reason == .upstreamTruncated)
        #expect(m.detail == "server closed TCP without close_notify")
        finish(&m, expecting: .upstreamTruncated, "server closed TCP without close_notify")
    }

    @Test func aClientErrorIsAFailureWithoutReset() {
        var m = relaying()
        #expect(m.failed(.client, .clientError, "connection reset by peer") == [.cancel(.idle), .closeUpstream, .schedule(.closeAfterRefusal, .milliseconds(250)), .closeClientOutput])
        #expect(m.failed(.client, .clientError, "second") == [])
    }

    @Test func theIdleTimerWaitsForTheLastByte() {
        var m = relaying()
        m.transferred(from: .client, bytes: 1, now: Self.t0 + .seconds(100))
        #expect(m.timerFired(.idle, now: Self.t0 + Self.idle) == [.schedule(.idle, .seconds(100))])
        #expect(m.isArmed(.idle))
        #expect(m.timerFired(.idle, now: Self.t0 + .seconds(400)) == [.closeUpstream, .closeClient])
        #expect(m.reason == .idleTimeout)
        #expect(m.detail == "no data either way for 5m")
        // Half-closed connections are idle-checked too.
        var half = relaying()
        _ = half.inputClosed(.client)
        #expect(half.timerFired(.idle, now: Self.t0 + Self.idle) == [.closeUpstream, .closeClient])
    }

    @Test func unarmedTimersAreIgnoredInEveryPhase() {
        var m = M(configuration: Self.sniffing)
        for timer in M.Timer.allCases { #expect(m.timerFired(timer, now: Self.t0) == []) }
        _ = m.accepted(slot: true)
        var r = relaying()
        for timer in M.Timer.allCases where timer != .idle { #expect(r.timerFired(timer, now: Self.t0) == []) }
    }

    @Test func theFirstBytesOfAClientThatSpeaksTLSAreDropped() {
        var whole = relaying()
        guard case .drop(let actions) = whole.firstBytes(from: .client, [0x16, 0x03, 0x01, 0x02, 0x00]) else {
            Issue.record("admitted a ClientHello")
            return
        }
        #expect(actions == [.cancel(.idle), .closeUpstream, .schedule(.closeAfterRefusal, .milliseconds(250)), .closeClientOutput])
        #expect(whole.reason == .clientSpeaksTLS)
        // One byte at a time: the record type alone is enough.
        var single = relaying()
        #expect(single.firstBytes(from: .client, [0x16]) != .admit)
        var notTLS = relaying()
        #expect(notTLS.firstBytes(from: .client, [0x16, 0x01]) == .admit)
        #expect(notTLS.firstBytes(from: .client, Array("GET /".utf8)) == .admit)
        #expect(notTLS.firstBytes(from: .upstream, [0x16, 0x03]) == .admit)
        // mysql: the client side checked its bytes itself.
        var mysql = relaying(.init(starttls: .mysql))
        #expect(mysql.firstBytes(from: .client, [0x16, 0x03]) == .admit)
    }

    @Test func aRefusalWhileReplayingSkipsTheRelayStart() {
        var m = connecting()
        _ = m.connected()
        #expect(m.handshakeCompleted(now: Self.t0) == [.cancel(.handshake), .startRelaying])
        // The replay of early bytes refuses the client: no idle timer, no reads.
        _ = m.firstBytes(from: .client, [0x16, 0x03])
        #expect(m.relayStarted() == [])
        #expect(!m.isArmed(.idle))
    }

    @Test func unexpectedInputsChangeNothing() {
        var m = M(configuration: .init())
        _ = m.accepted(slot: true)
        #expect(m.handshakeCompleted(now: Self.t0) == [])
        #expect(m.upgraded() == [])
        #expect(m.hostBytes(Array("GET".utf8)) == [])
        #expect(m.hostInputClosed() == [])
        #expect(m.flushed() == [])
        #expect(m.relayStarted() == [])
        #expect(m.clientPrepared() == [.connect(requestedHost: nil, timeout: Self.connectTimeout)])
        #expect(m.destinationChecked(.allow) == [])
        #expect(m.sideClosed(.upstream) == [])
        #expect(m.phase == .connecting)
    }

    @Test func timersAreCancelledWhenTheConnectionEnds() {
        var m = relaying()
        _ = m.abort(.shutdown, "worker stopping")
        #expect(!m.isArmed(.idle))
        var answered = sniffer()
        _ = answered.hostInputClosed()
        _ = answered.answerWritten()
        #expect(answered.isArmed(.closeAfterAnswer))
        // The client closed before the delay ran out.
        #expect(answered.channelClosed(.client) == [.cancel(.closeAfterAnswer), .releaseSlot, .logOutcome(.badRequest, detail: "the client closed before sending a whole request head")])
    }

    @Test func reasonsMapToResults() {
        #expect(RelayReason.completed.result == .ok)
        #expect(RelayReason.idleTimeout.result == .ok)
        #expect(RelayReason.notRedirected.result == .refused)
        #expect(RelayReason.destinationIsGateway.result == .refused)
        #expect(RelayReason.tlsVerifyFailed.result == .failed)
        #expect(RelayReason.connectRefused.description == "connect_refused")
        #expect(RelayReason.all.filter(\.resetsClient).map(\.description).sorted() == ["connect_refused", "upstream_error", "upstream_truncated"])
    }
}
