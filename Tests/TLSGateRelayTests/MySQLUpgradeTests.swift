import Testing

@testable import TLSGatePolicy
@testable import TLSGateRelay
@testable import TLSGateTLS

/// MySQL/MariaDB test packets, built field by field.
enum MySQLFixture {
    static let scramble: [UInt8] = Array("abcdefghijklmnopqrst".utf8)
    /// CLIENT_LONG_PASSWORD off (MariaDB), PROTOCOL_41, SSL, SECURE_CONNECTION, PLUGIN_AUTH, and a few more.
    static let serverCaps: UInt32 = 0x0200 | 0x0800 | 0x8000 | (1 << 19) | 0x0008 | (1 << 16) | (1 << 30)

    static func greetingPayload(
        version: String = "5.5.5-10.11.19-MariaDB-0+deb12u1", caps: UInt32 = serverCaps, authLength: UInt8 = 21,
        plugin: String = "mysql_native_password", protocolVersion: UInt8 = 10, tail: [UInt8] = [0]
    ) -> [UInt8] {
        var p: [UInt8] = [protocolVersion] + Array(version.utf8) + [0]
        p += [7, 0, 0, 0] + scramble.prefix(8) + [0]
        p += [UInt8(caps & 0xff), UInt8(caps >> 8 & 0xff), 45, 2, 0, UInt8(caps >> 16 & 0xff), UInt8(caps >> 24), authLength]
        p += [0, 0, 0, 0, 0, 0] + [0x1d, 0, 0, 0]  // MariaDB's extended capabilities
        p += scramble.dropFirst(8) + [0]
        p += Array(plugin.utf8) + tail
        return p
    }

    static func packet(_ sequence: UInt8, _ payload: [UInt8]) -> [UInt8] { MySQLPacket.frame(sequence: sequence, payload) }

    /// A handshake response: capabilities, max packet, charset, filler, user, auth data, plugin.
    static func responsePayload(caps: UInt32 = 0x0200 | 0x8000 | (1 << 19) | 0x0008) -> [UInt8] {
        MySQLPacket.littleEndian32(caps) + [0, 0, 0, 1, 45] + [UInt8](repeating: 0, count: 23)
            + Array("native".utf8) + [0] + [20] + [UInt8](repeating: 0x5a, count: 20)
            + Array("lab".utf8) + [0] + Array("mysql_native_password".utf8) + [0]
    }
}

/// Feeds a machine all at once and byte by byte; both must give the same action.
private func greet(_ bytes: [UInt8]) -> (UpgradeAction, MySQLUpgrade) {
    var whole = MySQLUpgrade()
    _ = whole.start()
    let wholeAction = whole.receive(bytes)
    var split = MySQLUpgrade()
    _ = split.start()
    var actions: [UpgradeAction] = []
    for byte in bytes {
        let action = split.receive([byte])
        if action != .needMore { actions.append(action) }
        if case .refuse = action { break }
    }
    if refusal(wholeAction) != nil {
        // Unasked bytes after the greeting are refused either way (as extra, or as unasked).
        #expect(actions.last.flatMap(refusal) != nil, "all at once refused, byte by byte did not")
    } else {
        #expect(actions == [wholeAction], "all at once and byte by byte differ")
    }
    return (wholeAction, whole)
}

private func refusal(_ action: UpgradeAction) -> String? {
    if case .refuse(let why) = action { return why }
    return nil
}

@Suite struct MySQLUpgradeTests {
    typealias F = MySQLFixture

    @Test func greetingIsRebuiltWithoutSSLThenSSLRequestThenTLS() throws {
        let (action, machine) = greet(F.packet(0, F.greetingPayload()))
        guard case .greetClient(let rebuilt) = action else {
            Issue.record("not a greeting: \(action)")
            return
        }
        // The same greeting but for CLIENT_SSL and CLIENT_SSL_VERIFY_SERVER_CERT, byte for byte.
        let expected = F.packet(0, F.greetingPayload(caps: F.serverCaps & ~(0x0800 | 1 << 30)))
        #expect(rebuilt == expected)
        #expect(machine.greeting?.scramble == F.scramble)
        // The client's copy of the scramble (caching_sha2_password's mask) is read back from it.
        #expect(MySQLUpgrade.scramble(ofBuilt: rebuilt) == F.scramble)
        #expect(MySQLUpgrade.scramble(ofBuilt: Array(rebuilt.dropLast(30))) == nil)
        #expect(MySQLUpgrade.scramble(ofBuilt: [1, 0, 0, 0]) == nil)
        #expect(machine.greeting?.extendedCapabilities == 0x1d)
        var m = machine
        let response = F.responsePayload()
        let next = m.clientAnswered(response)
        var request = Array(response.prefix(32))
        request[1] |= 0x08  // CLIENT_SSL
        #expect(next == .sendThenStartTLS(F.packet(1, request)))
        #expect(m.transcript == [
            "S: greeting, protocol 10, 5.5.5-10.11.19-MariaDB-0+deb12u1, auth mysql_native_password, CLIENT_SSL offered",
            "G: greeting for the client, rebuilt by the gateway, CLIENT_SSL cleared",
            "C: SSL request (the client's capabilities + CLIENT_SSL), sequence 1",
        ])
        // Only once.
        #expect(refusal(m.clientAnswered(response)) == "no usable client handshake response")
    }

    @Test func aNameWithoutItsFinalNULIsAccepted() {
        let (action, _) = greet(F.packet(0, F.greetingPayload(tail: [])))
        guard case .greetClient = action else {
            Issue.record("\(action)")
            return
        }
    }

    @Test func refusals() {
        #expect(refusal(greet(F.packet(0, F.greetingPayload(caps: F.serverCaps & ~0x0800))).0)
            == "the server does not offer TLS (no CLIENT_SSL in its greeting)")
        #expect(refusal(greet(F.packet(0, [0xff, 0x13, 0x04] + Array("#08S01Host is blocked".utf8))).0)
            == "the server refused the connection: 1043 Host is blocked")
        #expect(refusal(greet(F.packet(0, F.greetingPayload(protocolVersion: 9))).0)
            == "the server's greeting is not protocol 10 (9): not a MySQL/MariaDB server, or too old")
        #expect(refusal(greet(F.packet(0, F.greetingPayload(caps: F.serverCaps & ~(1 << 19)))).0)
            == "the server does not offer CLIENT_PLUGIN_AUTH (too old for the gateway)")
        #expect(refusal(greet(F.packet(0, F.greetingPayload(plugin: "mysql_clear_password"))).0)?
            .hasPrefix("the server's greeting names auth plugin \"mysql_clear_password\", not one the gateway passes on") == true)
        #expect(refusal(greet(F.packet(0, F.greetingPayload(authLength: 9))).0)
            == "the server's greeting is malformed: auth data length 9, not 21")
        #expect(refusal(greet(F.packet(1, F.greetingPayload())).0) == "the server's greeting has sequence number 1, not 0")
        #expect(refusal(greet(F.packet(0, F.greetingPayload(version: "bad\u{1}version"))).0)
            == "the server's greeting is malformed: its version text is empty, too long or not printable")
        #expect(refusal(greet(F.packet(0, F.greetingPayload(tail: [0, 1, 2]))).0)
            == "the server's greeting is malformed: bytes after its auth plugin name")
    }

    @Test func everyTruncationIsARefusalNeverACrash() {
        let payload = F.greetingPayload()
        for length in 0..<(payload.count - 22) {
            // A whole packet whose payload stops early: malformed, refused.
            let (action, _) = greet(F.packet(0, Array(payload.prefix(length))))
            #expect(refusal(action) != nil, "length \(length): \(action)")
        }
        // A packet that has not all arrived: wait.
        var machine = MySQLUpgrade()
        _ = machine.start()
        #expect(machine.receive(Array(F.packet(0, payload).dropLast(5))) == .needMore)
    }

    @Test func oversizedAndUnaskedAreRefused() {
        var machine = MySQLUpgrade()
        _ = machine.start()
        // The header alone says too much: refused at once, nothing buffered.
        #expect(machine.receive([0x00, 0x10, 0x00, 0x00]) == .refuse("the server's greeting is larger than 1024 bytes (4096)"))
        let extra = F.packet(0, F.greetingPayload()) + [1, 2, 3]
        #expect(refusal(greet(extra).0) == "the server sent more than its greeting, unasked (3 bytes), before TLS")
        var waiting = MySQLUpgrade()
        _ = waiting.start()
        _ = waiting.receive(F.packet(0, F.greetingPayload()))
        #expect(waiting.receive([9]) == .refuse("the server sent data after its greeting, unasked (1 bytes), before TLS"))
        #expect(waiting.receive([9]) == .refuse("the exchange already failed"))
    }

    @Test func probeResponseIsAValidResponse() {
        var client = MySQLClientSide()
        client.greeted()
        guard case .answered(let response, _) = client.receive(F.packet(1, MySQLUpgrade.probeResponse)) else {
            Issue.record("the probe's response is refused")
            return
        }
        #expect(response == MySQLUpgrade.probeResponse)
    }

    @Test func errPacketAndClientRefusal() {
        let err = StartTLSUpgrade.clientRefusal(.mysql, policy: "p", reason: "r", detail: "d", sequence: 2)
        #expect(err == F.packet(2, [0xff, 0x13, 0x04] + Array("#08S01tlsgate: policy p: r: d".utf8)))
        let long = StartTLSUpgrade.clientRefusal(.mysql, policy: "p", reason: "r", detail: String(repeating: "x", count: 5000))
        #expect(long.count < 420 && long[3] == 0)
        #expect(StartTLSUpgrade.clientGreeting(.mysql, server: "x") == nil)
    }
}

/// Feeds a client side all at once and byte by byte; what goes to the server, what goes to
/// the client, the refusal and the sequence the client expects must agree.
func mysqlFeed(_ client: MySQLClientSide, _ bytes: [UInt8]) -> (MySQLClientSide.Action, MySQLClientSide) {
    var whole = client
    let wholeAction = whole.receive(bytes)
    var split = client
    var answered: MySQLClientSide.Action = .needMore
    var passed: [UInt8] = []
    var replied: [UInt8] = []
    for byte in bytes {
        let action = split.receive([byte])
        switch action {
        case .pass(let more): passed += more
        case .reply(let toClient, let toServer):
            replied += toClient
            passed += toServer
        case .answered(let response, let held):
            answered = .answered(response: response, held: held)
        case .refuse:
            #expect(action == wholeAction)
            return (wholeAction, whole)
        case .needMore: break
        }
    }
    switch wholeAction {
    case .pass(let out): #expect(out == passed && replied.isEmpty)
    case .reply(let toClient, let toServer): #expect(toClient == replied && toServer == passed)
    case .answered(let response, let held):
        if case .answered(let r, let h) = answered {
            #expect(r == response && h + passed == held)
        } else {
            Issue.record("byte by byte gave no answer")
        }
    default: Issue.record("unexpected \(wholeAction)")
    }
    #expect(whole.clientExpects == split.clientExpects && whole.lead == split.lead)
    return (wholeAction, whole)
}

@Suite struct MySQLClientSideTests {
    typealias F = MySQLFixture

    /// Feeds all at once and byte by byte; the concatenated passes and last action must agree.
    private func feed(_ client: MySQLClientSide, _ bytes: [UInt8]) -> (MySQLClientSide.Action, MySQLClientSide) {
        mysqlFeed(client, bytes)
    }

    private var greeted: MySQLClientSide {
        var client = MySQLClientSide()
        client.greeted()
        return client
    }

    @Test func responseIsHeldAsSequenceTwoAndAuthPacketsGoOneUp() {
        let response = F.responsePayload()
        let (action, client) = feed(greeted, F.packet(1, response))
        #expect(action == .answered(response: response, held: F.packet(2, response)))
        #expect(client.clientExpects == 2)
        // The server's auth switch went to the client as 2; its answer 3 goes up as 4.
        var c = client
        c.serverSent(sequence: 2)
        #expect(c.clientExpects == 4)
        let (next, after) = feed(c, F.packet(3, [UInt8](repeating: 7, count: 64)))
        #expect(next == .pass(F.packet(4, [UInt8](repeating: 7, count: 64))))
        #expect(after.clientExpects == 4)
        var done = after
        #expect(done.authenticationEnded() == .needMore)
        #expect(done.isRelaying)
        #expect(done.receive([1, 2, 3]) == .pass([1, 2, 3]))
    }

    @Test func bytesAfterTheResponseAreAuthPackets() {
        let response = F.responsePayload()
        let (action, _) = feed(greeted, F.packet(1, response) + F.packet(3, [9]))
        #expect(action == .answered(response: response, held: F.packet(2, response) + F.packet(4, [9])))
    }

    @Test func aClientAskingForTLSIsAnsweredNotHung() {
        let request = MySQLPacket.littleEndian32(0x0200 | 0x0800 | 0x8000) + [0, 0, 0, 1, 45] + [UInt8](repeating: 0, count: 23)
        let (action, client) = feed(greeted, F.packet(1, request))
        guard case .refuse(let refusal) = action else {
            Issue.record("\(action)")
            return
        }
        #expect(refusal.asksForTLS)
        #expect(refusal.detail.hasPrefix("the client asked for TLS (CLIENT_SSL), which the gateway does not offer"))
        #expect(client.clientExpects == 2)
    }

    @Test func malformedTruncatedOversized() {
        func why(_ bytes: [UInt8], _ client: MySQLClientSide? = nil) -> String? {
            if case .refuse(let refusal) = feed(client ?? greeted, bytes).0 { return refusal.detail }
            return nil
        }
        #expect(why(F.packet(2, F.responsePayload())) == "the client's handshake response has sequence number 2, not 1")
        #expect(why(F.packet(1, Array(F.responsePayload().prefix(31)))) == "the client's handshake response is truncated (31 bytes)")
        #expect(why(F.packet(1, Array(F.responsePayload().prefix(36)))) == "the client's handshake response is malformed: its user name has no end")
        #expect(why(F.packet(1, F.responsePayload(caps: 0x8000))) == "the client does not speak protocol 4.1 (no CLIENT_PROTOCOL_41)")
        #expect(why([0xff, 0xff, 0x01, 1]) == "the client's handshake response is larger than \(MySQLClientSide.maxResponse) bytes (131071)")
        #expect(why([0x16, 0x03, 0x01, 0x00], MySQLClientSide())?.hasPrefix("the client sent a TLS ClientHello before the greeting") == true)
        #expect(why([0x01], MySQLClientSide()) == "the client spoke before the server's greeting: not a MySQL client")
        var auth = greeted
        _ = auth.receive(F.packet(1, F.responsePayload()))
        #expect(why(F.packet(3, [UInt8](repeating: 1, count: MySQLClientSide.maxAuthPacket + 1)), auth)
            == "the client's authentication packet is larger than \(MySQLClientSide.maxAuthPacket) bytes (16385)")
        // A partial packet when authentication ends was sent unasked.
        _ = auth.receive([5, 0])
        if case .refuse(let refusal) = auth.authenticationEnded() {
            #expect(refusal.detail == "the client sent 2 bytes during authentication, unasked")
        } else {
            Issue.record("a partial packet at the end of authentication passed")
        }
    }

    @Test func quitWatchFollowsPacketBoundaries() {
        var watch = MySQLQuitWatch()
        watch.scan(F.packet(0, [0x03] + Array("SELECT 1".utf8)))
        #expect(!watch.quitSent)
        for byte in F.packet(0, [0x01]) { watch.scan([byte]) }
        #expect(watch.quitSent)
        watch.scan([0])
        #expect(!watch.quitSent)
        // 01 00 00 00 01 inside a query's payload is not a quit.
        var inner = MySQLQuitWatch()
        inner.scan(F.packet(0, [0x03, 1, 0, 0, 0, 1]))
        #expect(!inner.quitSent)
        inner.scan(F.packet(0, [0x01]))
        #expect(inner.quitSent)
    }
}

@Suite struct MySQLServerAuthTests {
    typealias F = MySQLFixture

    private func both(_ bytes: [UInt8]) -> (MySQLServerAuth.Action, [UInt8]) {
        var whole = MySQLServerAuth()
        let action = whole.receive(bytes)
        var split = MySQLServerAuth()
        var passed: [UInt8] = []
        var sequences: [UInt8] = []
        for byte in bytes {
            switch split.receive([byte]) {
            case .pass(let out, let seqs, _):
                passed += out
                sequences += seqs
            case .refuse(let why):
                #expect(action == .refuse(why))
                return (action, [])
            }
        }
        if case .pass(let out, let seqs, _) = action {
            #expect(out == passed && seqs == sequences)
        }
        return (action, passed)
    }

    @Test func authSwitchThenOKRenumberedThenUntouched() {
        var auth = MySQLServerAuth()
        let switchRequest = [0xfe] + Array("client_ed25519".utf8) + [0] + [UInt8](repeating: 3, count: 32)
        #expect(auth.receive(F.packet(3, switchRequest)) == .pass(F.packet(2, switchRequest), sequences: [2], ended: false))
        let ok: [UInt8] = [0, 0, 0, 2, 0, 0, 0]
        // The OK and the first bytes after it (the relay's) in one read.
        #expect(auth.receive(F.packet(5, ok) + [9, 9]) == .pass(F.packet(4, ok) + [9, 9], sequences: [4], ended: true))
        #expect(auth.ended)
        #expect(auth.receive(F.packet(77, [1])) == .pass(F.packet(77, [1]), sequences: [], ended: true))
        #expect(auth.transcript == ["S: auth switch request (client_ed25519)", "S: OK, authentication over"])
        #expect(auth.switchScramble == nil && !auth.fullAuthenticationRequested)
    }

    @Test func fastAuthResultFollowedByOK() {
        let bytes = F.packet(3, [0x01, 0x03]) + F.packet(4, [0, 0, 0, 2, 0, 0, 0])
        let (action, _) = both(bytes)
        #expect(action == .pass(F.packet(2, [0x01, 0x03]) + F.packet(3, [0, 0, 0, 2, 0, 0, 0]), sequences: [2, 3], ended: true))
    }

    @Test func errEndsAuthentication() {
        let err: [UInt8] = [0xff, 0x15, 0x04] + Array("#28000Access denied".utf8)
        #expect(both(F.packet(3, err)).0 == .pass(F.packet(2, err), sequences: [2], ended: true))
    }

    @Test func publicKeyExchangeIsRenumbered() {
        var auth = MySQLServerAuth()
        let key = [0x01] + Array("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n".utf8)
        #expect(auth.receive(F.packet(5, key)) == .refuse("the server's authentication packet has sequence number 5, out of order (after 1)"))
        var ordered = MySQLServerAuth()
        #expect(ordered.receive(F.packet(3, [0xfe] + Array("sha256_password".utf8) + [0] + F.scramble + [0]))
            == .pass(F.packet(2, [0xfe] + Array("sha256_password".utf8) + [0] + F.scramble + [0]), sequences: [2], ended: false))
        #expect(ordered.receive(F.packet(5, key)) == .pass(F.packet(4, key), sequences: [4], ended: false))
    }

    @Test func fullAuthenticationGoesToTheClientThenTheOKFollowsTheLead() {
        // Server 3 (01 04) → client 2; the gateway answered the client's key request (lead 255):
        // the server's OK 5 → client 6.
        let (action, _) = both(F.packet(3, [0x01, 0x04]))
        #expect(action == .pass(F.packet(2, [0x01, 0x04]), sequences: [2], ended: false))
        var auth = MySQLServerAuth()
        _ = auth.receive(F.packet(3, [0x01, 0x04]))
        #expect(auth.fullAuthenticationRequested)
        let ok: [UInt8] = [0, 0, 0, 2, 0, 0, 0]
        #expect(auth.receive(F.packet(5, ok), lead: 255) == .pass(F.packet(6, ok), sequences: [6], ended: true))
        #expect(auth.transcript == [
            "S: caching_sha2_password full authentication requested (the gateway is the client's RSA endpoint)",
            "S: OK, authentication over",
        ])
        // Without a key request (the client had a key): lead 1, the OK 5 → client 4.
        var direct = MySQLServerAuth()
        _ = direct.receive(F.packet(3, [0x01, 0x04]))
        #expect(direct.receive(F.packet(5, ok)) == .pass(F.packet(4, ok), sequences: [4], ended: true))
        // The server's ERR (a wrong password) ends it the same way.
        let err: [UInt8] = [0xff, 0x15, 0x04] + Array("#28000Access denied".utf8)
        var denied = MySQLServerAuth()
        _ = denied.receive(F.packet(3, [0x01, 0x04]))
        #expect(denied.receive(F.packet(5, err), lead: 255) == .pass(F.packet(6, err), sequences: [6], ended: true))
    }

    @Test func fullAuthenticationOnceAndInOrder() {
        // Asked twice, or anything right after it without the client's answer.
        #expect(both(F.packet(3, [0x01, 0x04]) + F.packet(5, [0x01, 0x04])).0
            == .refuse("the server asks for caching_sha2_password full authentication a second time"))
        #expect(both(F.packet(3, [0x01, 0x04]) + F.packet(4, [0, 0, 0, 2, 0, 0, 0])).0
            == .refuse("the server's authentication packet has sequence number 4, out of order (after 3)"))
        // Only the fast-auth result is followed by the OK at once.
        #expect(both(F.packet(3, [0x01, 0x05]) + F.packet(4, [0, 0, 0, 2, 0, 0, 0])).0
            == .refuse("the server's authentication packet has sequence number 4, out of order (after 3)"))
    }

    @Test func anAuthSwitchToCachingSHA2BringsItsScramble() {
        let fresh = [UInt8](repeating: 0x41, count: 20)
        let request = [0xfe] + Array("caching_sha2_password".utf8) + [0] + fresh + [0]
        var auth = MySQLServerAuth()
        #expect(auth.receive(F.packet(3, request)) == .pass(F.packet(2, request), sequences: [2], ended: false))
        #expect(auth.switchScramble == fresh)
        #expect(auth.transcript == ["S: auth switch request (caching_sha2_password)"])
        let short = [0xfe] + Array("caching_sha2_password".utf8) + [0] + [UInt8](repeating: 1, count: 8) + [0]
        #expect(both(F.packet(3, short)).0
            == .refuse("the server's auth switch to caching_sha2_password carries 9 bytes of scramble, not 20"))
    }

    @Test func fullAuthenticationMalformedOversized() {
        #expect(both(F.packet(3, [])).0 == .refuse("the server sent an empty authentication packet"))
        #expect(both(F.packet(4, [0])).0 == .refuse("the server's authentication packet has sequence number 4, out of order (after 1)"))
        #expect(both([0x01, 0x40, 0x00, 3]).0 == .refuse("the server's authentication packet is larger than 16384 bytes (16385)"))
        var auth = MySQLServerAuth()
        #expect(auth.receive(Array(F.packet(3, [0xfe, 1, 2]).prefix(5))) == .pass([], sequences: [], ended: false))
        #expect(auth.receive([1, 2]) == .pass(F.packet(2, [0xfe, 1, 2]), sequences: [2], ended: false))
    }
}

@Suite struct DirectTLSStartTests {
    @Test func startsTLSAtOnce() {
        var machine = StartTLSUpgrade(.postgresDirect, ehloName: "x")
        #expect(machine.start() == .startTLS)
        #expect(machine.transcript == ["C: TLS handshake at once (no SSLRequest), ALPN postgresql required"])
        #expect(machine.receive([1]) == .refuse("the server sent 1 bytes before the TLS handshake"))
        #expect(machine.start() == .refuse("already started"))
        let refusal = StartTLSUpgrade.clientRefusal(.postgresDirect, policy: "p", reason: "r", detail: "d")
        #expect(refusal == PostgresUpgrade.errorResponse("tlsgate: policy p: r: d"))
        #expect(StartTLSProtocol.postgresDirect.requiredALPN == "postgresql" && StartTLSProtocol.mysql.requiredALPN == nil)
    }
}

extension MySQLServerAuth.Action {
    func isRefusal(_ containing: String) -> Bool {
        if case .refuse(let why) = self { return why.contains(containing) }
        return false
    }
}
