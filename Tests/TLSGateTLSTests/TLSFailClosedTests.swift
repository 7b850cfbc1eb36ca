import COpenSSL
import NIOCore
import TLSGatePolicy
import Testing

@testable import TLSGateTLS

/// Nothing leaves unverified: anonymous suites and the security level.
@Suite struct TLSFailClosedTests {
    let pki = TestPKI.shared

    func anonymousServer() -> InMemoryTLSServer {
        InMemoryTLSServer(context: InMemoryTLSServer.Context(anonymous: ()))
    }

    /// Even if a cipher list let an anonymous suite through, the handshake that used it is
    /// refused: after every handshake a peer certificate and X509_V_OK are required.
    @Test func anonymousHandshakeIsRefusedAfterTheHandshake() throws {
        let context = try TLSContext(
            configuration: TLSClientConfiguration(trustSystem: false, caFiles: [pki.path("root.pem")], minVersion: .tls1_2))
        // Simulate a hole in the cipher configuration: offer only anonymous suites.
        #expect(SSL_CTX_set_cipher_list(context.ctx, "aNULL:@SECLEVEL=0") == 1)
        let pair = try Pair(server: anonymousServer(), context: context)
        try pair.pump()
        let error = try #require(pair.recorder.tlsError)
        #expect(error.kind == .verificationFailed)
        #expect(error.verifyMessage == "the server presented no certificate (cipher AECDH-AES256-SHA): nothing was verified")
        #expect(pair.recorder.handshake == nil)
        #expect(pair.recorder.received.isEmpty)
        #expect(!pair.channel.isActive)
        #expect(context.sessions.count == 0)
    }

    /// A legacy policy (security level 0 for the versions) with `ciphers = "ALL"` still
    /// offers no anonymous suite: the anonymous server finds nothing in common.
    @Test(arguments: [TLSProtocolVersion.tls1_0, .tls1_2])
    func allCiphersNeverIncludeAnonymousSuites(minVersion: TLSProtocolVersion) throws {
        let pair = try Pair(
            server: anonymousServer(),
            configuration: TLSClientConfiguration(
                trustSystem: false, caFiles: [pki.path("root.pem")], minVersion: minVersion, ciphers: "ALL"))
        try pair.pump()
        let error = try #require(pair.recorder.tlsError)
        #expect(error.kind == .handshakeFailed)
        #expect(pair.recorder.handshake == nil)
    }

    @Test func cipherListIsHardened() {
        #expect(TLSContext.cipherList(nil) == "DEFAULT:!aNULL:!eNULL")
        #expect(TLSContext.cipherList("ALL:eNULL") == "ALL:eNULL:!aNULL:!eNULL")
    }

    @Test func seclevelInCiphersIsRefused() {
        do {
            _ = try TLSContext(
                configuration: TLSClientConfiguration(
                    trustSystem: false, caFiles: [pki.path("root.pem")], ciphers: "ALL:@SECLEVEL=0"))
            Issue.record("a context with @SECLEVEL in its cipher list was built")
        } catch {
            #expect(error.kind == .configuration)
            #expect(error.setting == .ciphers)
            #expect(error.context == "ciphers \"ALL:@SECLEVEL=0\" sets @SECLEVEL: the security level is not a policy setting")
        }
    }
}
