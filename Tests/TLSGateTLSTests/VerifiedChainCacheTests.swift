import COpenSSL
import CTLSGateOpenSSL
import NIOCore
import Testing

#if canImport(Glibc)
import Glibc
#endif

@testable import TLSGateTLS

/// A chain verified once is not checked again for the same certificates, and nothing else
/// of the check is skipped: real handshakes through one context, and the cache's rules.
@Suite struct VerifiedChainCacheTests {
    let pki = TestPKI.shared

    func context(pins: [String] = [], pinOnly: Bool = false) throws -> TLSContext {
        try TLSContext(configuration: TLSClientConfiguration(
            trustSystem: false, caFiles: pinOnly ? [] : [pki.path("root.pem")],
            pins: try pins.map { try #require(TLSVerificationTests.digest($0)) }, pinOnly: pinOnly))
    }

    func handshake(_ context: TLSContext, identity: TLSPeerIdentity = .dnsName("good.test"), leaf: String = "good")
        throws -> Recorder
    {
        let server = InMemoryTLSServer(certificate: pki.path("\(leaf).pem"), key: pki.path("\(leaf).key"))
        let pair = try Pair(identity: identity, server: server, context: context)
        try pair.pump()
        return pair.recorder
    }

    @Test func theSameChainIsVerifiedOnceAndTheNameOnEveryHandshake() throws {
        let context = try context()
        let cache = try #require(context.verifiedChains)
        #expect(try handshake(context).handshake != nil)
        #expect(cache.count == 1 && cache.hits == 0)
        #expect(try handshake(context).handshake != nil)
        #expect(cache.hits == 1)
        // Same certificate, another name: the cached chain does not make it acceptable.
        let otherName = try handshake(context, identity: .dnsName("api.internal"))
        #expect(cache.hits == 2)
        #expect(otherName.tlsError?.kind == .verificationFailed)
        #expect(otherName.tlsError?.detail == "hostname mismatch")
        // Another certificate is another key: checked in full, then kept beside the first.
        #expect(try handshake(context, identity: .dnsName("a.wild.test"), leaf: "wild").handshake != nil)
        #expect(cache.count == 2 && cache.hits == 2)
    }

    @Test func pinsAreCheckedOnEveryHandshake() throws {
        // The chain verifies (and is kept), the pin does not match: refused every time.
        let context = try context(pins: [try pki.pin(of: "self.pem")])
        for round in 0..<3 {
            let recorder = try handshake(context)
            #expect(recorder.tlsError?.detail == "no certificate of the verified chain matches the policy's pins", "round \(round)")
        }
        #expect(context.verifiedChains?.hits == 2)
    }

    @Test func failuresAreNotKept() throws {
        let context = try context()
        for _ in 0..<2 {
            #expect(try handshake(context, leaf: "self").tlsError?.kind == .verificationFailed)
        }
        #expect(context.verifiedChains?.count == 0)
    }

    @Test func pinOnlyDoesNotUseTheCache() throws {
        #expect(try context(pins: [try pki.pin(of: "self.pem")], pinOnly: true).verifiedChains == nil)
        #expect(try context().verifiedChains != nil)
    }

    @Test func anEntryHoldsForItsLifetimeAndNotBeforeItsCheck() throws {
        let context = try context()
        let cache = try #require(context.verifiedChains)
        #expect(try handshake(context).handshake != nil)
        let key = try #require(VerifiedChainCache.key(leaf: try certificate("good.pem"), rest: nil))
        let now = time(nil)
        // A clock set back before the check: not trusted (and the entry is dropped).
        #expect(cache.chain(for: key, now: now - 60) == nil)
        #expect(cache.count == 0)
        #expect(try handshake(context).handshake != nil)
        let chain = try #require(cache.chain(for: key, now: now + VerifiedChainCache.lifetime - 5))
        #expect(tg_ssl_sk_x509_num(chain) == 2)  // leaf and root
        tg_ssl_sk_x509_free_all(chain)
        #expect(cache.chain(for: key, now: now + VerifiedChainCache.lifetime + 5) == nil)
        #expect(cache.count == 0)
    }

    @Test func secondsLeftAreThoseOfTheFirstNotAfter() throws {
        // The test PKI's certificates are made for 30 days.
        let context = try context()
        #expect(try handshake(context).handshake != nil)
        let key = try #require(VerifiedChainCache.key(leaf: try certificate("good.pem"), rest: nil))
        let chain = try #require(context.verifiedChains?.chain(for: key))
        defer { tg_ssl_sk_x509_free_all(chain) }
        let left = tg_ssl_chain_seconds_left(chain)
        #expect(left > 29 * 86400 && left <= 30 * 86400)
    }

    @Test func capacityEvictsTheOldest() throws {
        let cache = VerifiedChainCache(capacity: 1)
        let good = try #require(VerifiedChainCache.key(leaf: try certificate("good.pem"), rest: nil))
        let wild = try #require(VerifiedChainCache.key(leaf: try certificate("wild.pem"), rest: nil))
        #expect(good != wild)
        cache.store(try stack("good.pem"), for: good)
        cache.store(try stack("wild.pem"), for: wild)
        #expect(cache.count == 1)
        #expect(cache.chain(for: good) == nil)
        let kept = try #require(cache.chain(for: wild))
        tg_ssl_sk_x509_free_all(kept)
    }

    /// A certificate read from the test PKI (one reference, not freed: the test is short).
    func certificate(_ name: String) throws -> OpaquePointer {
        let file = try #require(fopen(pki.path(name), "r"))
        defer { fclose(file) }
        return try #require(PEM_read_X509(file, nil, nil, nil))
    }

    /// A one-certificate STACK_OF(X509), as a verified chain would be.
    func stack(_ name: String) throws -> OpaquePointer {
        let context = try context()
        #expect(try handshake(context, identity: .dnsName(name == "wild.pem" ? "a.wild.test" : "good.test"), leaf: String(name.dropLast(4))).handshake != nil)
        let key = try #require(VerifiedChainCache.key(leaf: try certificate(name), rest: nil))
        return try #require(context.verifiedChains?.chain(for: key))
    }
}
