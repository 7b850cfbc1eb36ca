import Testing

@testable import TLSGateRelay
@testable import TLSGateTLS

/// caching_sha2_password full authentication through `MySQLClientSide`: the gateway as the
/// client's RSA endpoint, with real RSA keys (OpenSSL), fed all at once and byte by byte.
@Suite struct MySQLFullAuthenticationTests {
    typealias F = MySQLFixture
    static let gatewayKey = try! RSAKey.generate(bits: 2048)
    static let otherKey = try! RSAKey.generate(bits: 2048)
    static let password = "s3cret-pw"

    /// A client side past the handshake response, the server having asked for full
    /// authentication (its 01 04 went to the client as sequence 2).
    private func fullAuthentication(scramble: [UInt8] = F.scramble, switchScramble: [UInt8]? = nil) -> MySQLClientSide {
        var client = MySQLClientSide(key: { Self.gatewayKey })
        client.greeted(scramble: scramble)
        _ = client.receive(F.packet(1, F.responsePayload()))
        client.serverAsked(fullAuthentication: false, switchScramble: switchScramble)
        client.serverSent(sequence: 2)
        client.serverAsked(fullAuthentication: true, switchScramble: nil)
        return client
    }

    /// What a client sends: the password and its NUL, masked with the scramble, RSA-OAEP.
    private func sealed(_ password: String = password, scramble: [UInt8] = F.scramble, with key: RSAKey = gatewayKey, nul: Bool = true)
        -> [UInt8]
    {
        var plain = Array(password.utf8) + (nul ? [0] : [])
        for index in plain.indices { plain[index] ^= scramble[index % scramble.count] }
        let client = try! RSAKey(publicKeyPEM: key.publicKeyPEM)
        return try! client.encrypt(plain)
    }

    private var clear: [UInt8] { Array(Self.password.utf8) + [0] }

    @Test func keyRequestIsAnsweredByTheGatewayThenThePasswordGoesInClearInsideTLS() throws {
        let (asked, afterKey) = mysqlFeed(fullAuthentication(), F.packet(3, [0x02]))
        // The server's way: 0x01 then the PEM, as the next sequence; nothing to the server.
        #expect(asked == .reply(toClient: F.packet(4, [0x01] + Self.gatewayKey.publicKeyPEM), toServer: []))
        #expect(afterKey.lead == 255 && afterKey.clientExpects == 6)
        // The client reads the PEM as a key (what libmariadb does with PEM_read_bio_PUBKEY).
        #expect(try RSAKey(publicKeyPEM: Self.gatewayKey.publicKeyPEM).size == 256)
        let (sent, done) = mysqlFeed(afterKey, F.packet(5, sealed()))
        // Client 5 → server 4 (the server has seen 3: its 01 04): the clear password and NUL.
        #expect(sent == .pass(F.packet(4, clear)))
        #expect(done.clientExpects == 6)
        // The server's OK (server 5) reaches the client as 6, which it expects.
        var client = done
        client.serverSent(sequence: 5 &- client.lead)
        #expect(client.authenticationEnded() == .needMore && client.isRelaying)
    }

    @Test func keyRequestAndPasswordInOneRead() {
        let bytes = F.packet(3, [0x02]) + F.packet(5, sealed())
        let (action, client) = mysqlFeed(fullAuthentication(), bytes)
        #expect(action == .reply(toClient: F.packet(4, [0x01] + Self.gatewayKey.publicKeyPEM), toServer: F.packet(4, clear)))
        #expect(client.lead == 255)
    }

    @Test func aClientThatHasTheGatewaysKeySkipsTheRequest() {
        let (action, client) = mysqlFeed(fullAuthentication(), F.packet(3, sealed()))
        #expect(action == .pass(F.packet(4, clear)))
        #expect(client.lead == 1 && client.clientExpects == 4)
    }

    @Test func theScrambleOfAnAuthSwitchIsTheOneUsed() {
        let fresh = [UInt8](repeating: 0x37, count: 20)
        let (action, _) = mysqlFeed(fullAuthentication(switchScramble: fresh), F.packet(3, sealed(scramble: fresh)))
        #expect(action == .pass(F.packet(4, clear)))
        // Masked with the greeting's scramble while the server switched: no final NUL.
        let (stale, _) = mysqlFeed(fullAuthentication(switchScramble: fresh), F.packet(3, sealed()))
        #expect(stale.refusalDetail == "the client's password is malformed after decryption (no single final NUL: another scramble?)")
    }

    @Test func refusalsNameSizesNeverThePassword() {
        func refusal(_ bytes: [UInt8], _ client: MySQLClientSide? = nil) -> MySQLClientSide.Refusal? {
            if case .refuse(let refusal) = mysqlFeed(client ?? fullAuthentication(), bytes).0 { return refusal }
            return nil
        }
        // Encrypted with another key (e.g. the real server's, configured in the client).
        let wrong = refusal(F.packet(3, sealed(with: Self.otherKey)))
        #expect(wrong?.detail.hasPrefix("the client's password does not decrypt with the gateway's RSA key") == true)
        #expect(wrong?.asksForTLS == false && wrong?.gatewayKey == false)
        // The password in clear on the plain side.
        #expect(refusal(F.packet(3, clear))?.detail.hasPrefix(
            "the client sent its password in clear (10 bytes ending in NUL) on the plain LAN side") == true)
        // Neither a key request nor a 256-byte blob.
        #expect(refusal(F.packet(3, [0x02, 0x02]))?.detail
            == "the client's answer to full authentication is 2 bytes: neither a public key request (the byte 0x02) nor a password encrypted with the gateway's 2048-bit key (256 bytes)")
        #expect(refusal(F.packet(3, []))?.detail.hasPrefix("the client's answer to full authentication is 0 bytes") == true)
        #expect(refusal(F.packet(3, [UInt8](repeating: 7, count: 257)))?.detail.hasPrefix(
            "the client's answer to full authentication is 257 bytes") == true)
        // Oversized: refused from its header.
        #expect(refusal([0x01, 0x04, 0x00, 3])?.detail == "the client's answer to full authentication is larger than 1024 bytes (1025)")
        // A decrypted password without its final NUL.
        #expect(refusal(F.packet(3, sealed(nul: false)))?.detail
            == "the client's password is malformed after decryption (no single final NUL: another scramble?)")
        // A second key request.
        let (_, afterKey) = mysqlFeed(fullAuthentication(), F.packet(3, [0x02]))
        #expect(refusal(F.packet(5, [0x02]), afterKey)?.detail == "the client asked for the public key a second time")
        // None of them carries the password.
        for detail in [wrong?.detail, refusal(F.packet(3, clear))?.detail] {
            #expect(detail?.contains(Self.password) == false)
        }
    }

    @Test func aTruncatedPasswordWaitsAndIsUnaskedWhenAuthenticationEnds() {
        var client = fullAuthentication()
        let packet = F.packet(3, sealed())
        #expect(client.receive(Array(packet.prefix(100))) == .pass([]))
        guard case .refuse(let refusal) = client.authenticationEnded() else {
            Issue.record("a partial password passed")
            return
        }
        #expect(refusal.detail == "the client sent 100 bytes during authentication, unasked")
    }

    @Test func aKeyThatCannotBeMadeIsTheGatewaysRefusal() {
        var client = MySQLClientSide(key: { () throws(RSAKeyError) -> RSAKey in throw RSAKeyError(context: "no entropy") })
        client.greeted(scramble: F.scramble)
        _ = client.receive(F.packet(1, F.responsePayload()))
        client.serverSent(sequence: 2)
        client.serverAsked(fullAuthentication: true, switchScramble: nil)
        guard case .refuse(let refusal) = client.receive(F.packet(3, [0x02])) else {
            Issue.record("no refusal")
            return
        }
        #expect(refusal.gatewayKey && refusal.detail == "the gateway could not make its RSA key for caching_sha2_password: no entropy")
    }

    @Test func withoutFullAuthenticationTheSameBytesAreRenumberedOnly() {
        // A 0x02 before the server asked (plugin data of some other exchange) goes to the server.
        var client = MySQLClientSide(key: { Self.gatewayKey })
        client.greeted(scramble: F.scramble)
        _ = client.receive(F.packet(1, F.responsePayload()))
        client.serverSent(sequence: 2)
        #expect(mysqlFeed(client, F.packet(3, [0x02])).0 == .pass(F.packet(4, [0x02])))
        // Fast authentication (01 03 then OK) never involves the key.
        client.serverSent(sequence: 2)
        client.serverSent(sequence: 3)
        #expect(client.authenticationEnded() == .needMore && client.isRelaying && client.lead == 1)
    }

    @Test func theSessionTakesTheScrambleFromTheGreetingItGaveAndReportsRefusals() throws {
        // The wiring the handlers use: the greeting the gateway built (CLIENT_SSL cleared),
        // the server's packets, the client's; the worker's own key.
        var refusals: [String] = []
        let session = MySQLSession { reason, detail in refusals.append("\(reason): \(detail)") }
        let parsed = try MySQLUpgrade.parse(F.greetingPayload(plugin: "caching_sha2_password")).get()
        session.greet(MySQLUpgrade.build(parsed))
        guard case .answered = session.clientSent(F.packet(1, F.responsePayload())) else {
            Issue.record("no answer")
            return
        }
        session.serverSent(sequences: [2], ended: false, fullAuthentication: true, switchScramble: nil)
        let key = try MySQLGatewayKey.shared()
        guard case .reply(let pem, let none) = session.clientSent(F.packet(3, [0x02])) else {
            Issue.record("the key request was not answered")
            return
        }
        #expect(pem == F.packet(4, [0x01] + key.publicKeyPEM) && none.isEmpty && session.lead == 255)
        #expect(session.refusalSequence == 6)
        #expect(session.clientSent(F.packet(5, sealed(with: key))) == .pass(F.packet(4, clear)))
        session.serverSent(sequences: [6], ended: true)
        #expect(refusals.isEmpty && session.client.isRelaying)

        // The same with another key: refused as the client's error, numbered for the client.
        let other = MySQLSession { reason, detail in refusals.append("\(reason): \(detail)") }
        other.greet(MySQLUpgrade.build(parsed))
        _ = other.clientSent(F.packet(1, F.responsePayload()))
        other.serverSent(sequences: [2], ended: false, fullAuthentication: true, switchScramble: nil)
        _ = other.clientSent(F.packet(3, sealed(with: Self.otherKey)))
        #expect(refusals.count == 1 && refusals[0].hasPrefix("client_error: the client's password does not decrypt"))
        #expect(other.refusalSequence == 4)
    }

    @Test func theWorkersKeyIsMadeOnceAndShared() throws {
        let first = try MySQLGatewayKey.shared()
        #expect(first.bits == MySQLGatewayKey.bits && first.bits >= 2048)
        #expect(try MySQLGatewayKey.shared() === first)
    }
}

extension MySQLClientSide.Action {
    var refusalDetail: String? {
        if case .refuse(let refusal) = self { return refusal.detail }
        return nil
    }
}
