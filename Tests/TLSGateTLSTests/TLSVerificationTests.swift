import Foundation
import NIOCore
import Testing

@testable import TLSGateTLS

/// The policy knobs of the certificate check, through the real handler and OpenSSL.
@Suite struct TLSVerificationTests {
    let pki = TestPKI.shared

    func configuration(
        pins: [String] = [], pinOnly: Bool = false, acceptedNames: [String] = [], trust: Bool = true,
        alpn: [String] = [], alpnRequired: Bool = false
    ) throws -> TLSClientConfiguration {
        TLSClientConfiguration(
            trustSystem: false, caFiles: trust ? [pki.path("root.pem")] : [], alpn: alpn, alpnRequired: alpnRequired,
            acceptedNames: acceptedNames, pins: try pins.map { try #require(Self.digest($0)) }, pinOnly: pinOnly)
    }

    @Test func pinOfTheLeafOrTheRootMatches() throws {
        for pinned in ["good.pem", "root.pem"] {
            let pair = try Pair(configuration: configuration(pins: [try pki.pin(of: pinned)]))
            try pair.pump()
            #expect(pair.recorder.handshake != nil, "pin of \(pinned)")
        }
    }

    @Test func pinMismatchRefusesAGoodChain() throws {
        // A backup pin that is not on the chain is fine; only non-matching pins refuse.
        let pair = try Pair(configuration: configuration(pins: [try pki.pin(of: "self.pem")]))
        try pair.pump()
        let error = try #require(pair.recorder.tlsError)
        #expect(error.kind == .verificationFailed)
        #expect(error.detail == "no certificate of the verified chain matches the policy's pins")
        #expect(error.peerCertificate?.subjectAltNames == "DNS:good.test,IP:198.19.0.10")
    }

    @Test func backupPinsAreAccepted() throws {
        let pair = try Pair(configuration: configuration(pins: [try pki.pin(of: "self.pem"), try pki.pin(of: "good.pem")]))
        try pair.pump()
        #expect(pair.recorder.handshake != nil)
    }

    @Test func pinOnlyTrustsAPinnedSelfSignedServer() throws {
        let server = InMemoryTLSServer(certificate: pki.path("self.pem"), key: pki.path("self.key"))
        let pinned = try Pair(server: server, configuration: configuration(pins: [try pki.pin(of: "self.pem")], pinOnly: true, trust: false))
        try pinned.pump()
        #expect(pinned.recorder.handshake != nil)

        let other = InMemoryTLSServer(certificate: pki.path("self.pem"), key: pki.path("self.key"))
        let unpinned = try Pair(server: other, configuration: configuration(pins: [try pki.pin(of: "good.pem")], pinOnly: true, trust: false))
        try unpinned.pump()
        #expect(unpinned.recorder.tlsError?.detail.contains("pin_only") == true)
    }

    @Test func acceptedNamesWidenTheIdentity() throws {
        let refused = try Pair(identity: .dnsName("api.internal"), configuration: configuration())
        try refused.pump()
        #expect(refused.recorder.tlsError?.detail == "hostname mismatch")
        let accepted = try Pair(identity: .dnsName("api.internal"), configuration: configuration(acceptedNames: ["good.test"]))
        try accepted.pump()
        #expect(accepted.recorder.handshake != nil)
        let byIP = try Pair(identity: .dnsName("api.internal"), configuration: configuration(acceptedNames: ["198.19.0.10"]))
        try byIP.pump()
        #expect(byIP.recorder.handshake != nil)
    }

    @Test func alpnRequiredFailsWhenTheServerPicksNone() throws {
        let pair = try Pair(configuration: configuration(alpn: ["h2"], alpnRequired: true))
        try pair.pump()
        let error = try #require(pair.recorder.tlsError)
        #expect(error.kind == .handshakeFailed)
        #expect(error.detail.contains("alpn_required"))
        // Without alpn_required the same server is fine.
        let lenient = try Pair(configuration: configuration(alpn: ["h2"]))
        try lenient.pump()
        #expect(lenient.recorder.handshake?.alpn == nil)
    }

    @Test func handshakeReportsThePresentedChain() throws {
        let pair = try Pair()
        try pair.pump()
        let chain = try #require(pair.recorder.handshake?.peerChain)
        #expect(chain.count == 1)
        #expect(chain.first?.spkiPin == (try pki.pin(of: "good.pem")))
        #expect(chain.first?.issuer == "CN=tlsgate test root")
        #expect(chain.first?.sha256Fingerprint.count == 64)
    }

    @Test func relayHandshakesSkipTheChainSummary() throws {
        // The relay never shows the chain: it is not summarised (names, digests) per handshake.
        let pair = try Pair(reportsPeerChain: false)
        try pair.pump()
        let handshake = try #require(pair.recorder.handshake)
        #expect(handshake.peerChain.isEmpty)
        #expect(handshake.version == "TLSv1.3")
    }

    static func digest(_ pin: String) -> [UInt8]? {
        Data(base64Encoded: String(pin.dropFirst("sha256/".count))).map { [UInt8]($0) }
    }

    @Test func summaryPinsUseStandardBase64() throws {
        // The pin tlsgate prints is the one openssl computes (and policies contain).
        let pair = try Pair()
        try pair.pump()
        let pin = try #require(pair.recorder.handshake?.peerChain.first?.spkiPin)
        #expect(pin == (try pki.pin(of: "good.pem")))
        #expect(Self.digest(pin)?.count == 32)
    }
}
