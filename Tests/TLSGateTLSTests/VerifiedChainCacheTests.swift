import COpenSSL
import CTLSGateOpenSSL
import Dispatch
import NIOConcurrencyHelpers
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

    func context(pins: [String] = [], pinOnly: Bool = false, crl: Bool = false) throws -> TLSContext {
        try TLSContext(configuration: TLSClientConfiguration(
            trustSystem: false, caFiles: pinOnly ? [] : [pki.path("root.pem")],
            pins: try pins.map { try #require(TLSVerificationTests.digest($0)) }, pinOnly: pinOnly,
            crlFiles: crl ? [pki.path("crl.pem")] : []))
    }

    func handshake(
        _ context: TLSContext, identity: TLSPeerIdentity = .dnsName("good.test"), leaf: String = "good",
        maxVersion: Int32 = 0
    ) throws -> Pair {
        let server = InMemoryTLSServer(certificate: pki.path("\(leaf).pem"), key: pki.path("\(leaf).key"), maxVersion: maxVersion)
        let pair = try Pair(identity: identity, server: server, context: context)
        try pair.pump()
        return pair
    }

    @Test func theSameChainIsVerifiedOnceAndTheNameOnEveryHandshake() throws {
        let context = try context()
        let cache = try #require(context.verifiedChains)
        #expect(try handshake(context).recorder.handshake != nil)
        #expect(cache.count == 1 && cache.hits == 0)
        #expect(try handshake(context).recorder.handshake != nil)
        #expect(cache.hits == 1)
        // Same certificate, another name: the cached chain does not make it acceptable.
        let otherName = try handshake(context, identity: .dnsName("api.internal")).recorder
        #expect(cache.hits == 2)
        #expect(otherName.tlsError?.kind == .verificationFailed)
        #expect(otherName.tlsError?.detail == "hostname mismatch")
        // Another certificate is another key: checked in full, then kept beside the first.
        #expect(try handshake(context, identity: .dnsName("a.wild.test"), leaf: "wild").recorder.handshake != nil)
        #expect(cache.count == 2 && cache.hits == 2)
    }

    @Test func aHitInstallsTheVerifiedChainThePinsAreCheckedOn() throws {
        // The root's pin matches only on the verified chain (the server sends the leaf alone):
        // accepted on hits too, so the cached chain became the connection's.
        let pinned = try context(pins: [try pki.pin(of: "root.pem")])
        for round in 0..<3 {
            #expect(try handshake(pinned).recorder.handshake != nil, "round \(round)")
        }
        #expect(pinned.verifiedChains?.hits == 2)
        // A pin on no certificate of the chain refuses every time, kept chain or not.
        let unpinned = try context(pins: [try pki.pin(of: "self.pem")])
        for round in 0..<3 {
            let recorder = try handshake(unpinned).recorder
            #expect(recorder.tlsError?.detail == "no certificate of the verified chain matches the policy's pins", "round \(round)")
        }
        #expect(unpinned.verifiedChains?.hits == 2)
    }

    @Test func theServerStillSignsTheHandshakeOnAHit() throws {
        // TLS 1.2: one byte of the ServerKeyExchange signature changed, with the chain kept.
        let context = try context()
        #expect(try handshake(context, maxVersion: 0x0303).recorder.handshake != nil)
        let server = InMemoryTLSServer(certificate: pki.path("good.pem"), key: pki.path("good.key"), maxVersion: 0x0303)
        let pair = try Pair(identity: .dnsName("good.test"), server: server, context: context)
        var tampered = false
        for _ in 0..<64 {
            var moved = false
            while let out = try pair.channel.readOutbound(as: ByteBuffer.self) {
                moved = true
                var reply = pair.server.receive(out)
                if !tampered, let changed = Self.flipLastSignatureByte(of: reply) {
                    reply = changed
                    tampered = true
                }
                try pair.deliver(reply)
            }
            if !moved { break }
        }
        #expect(tampered)
        #expect(context.verifiedChains?.hits == 1)
        #expect(pair.recorder.handshake == nil)
        #expect(pair.recorder.tlsError?.kind == .handshakeFailed)
    }

    /// The flight with the ServerKeyExchange (handshake type 12), its last byte (in the
    /// signature) flipped; nil when the flight has none.
    static func flipLastSignatureByte(of flight: ByteBuffer) -> ByteBuffer? {
        var bytes = Array(flight.readableBytesView)
        var record = 0
        while record + 5 <= bytes.count {
            let length = Int(bytes[record + 3]) << 8 | Int(bytes[record + 4])
            if bytes[record] == 22 {  // handshake records
                var message = record + 5
                while message + 4 <= min(record + 5 + length, bytes.count) {
                    let size = Int(bytes[message + 1]) << 16 | Int(bytes[message + 2]) << 8 | Int(bytes[message + 3])
                    if bytes[message] == 12, message + 4 + size <= bytes.count {
                        bytes[message + 4 + size - 1] ^= 0x01
                        return ByteBuffer(bytes: bytes)
                    }
                    message += 4 + size
                }
            }
            record += 5 + length
        }
        return nil
    }

    @Test func failuresAreNotKept() throws {
        let context = try context()
        for _ in 0..<2 {
            #expect(try handshake(context, leaf: "self").recorder.tlsError?.kind == .verificationFailed)
        }
        #expect(context.verifiedChains?.count == 0)
    }

    @Test func crlAndPinOnlyPoliciesDoNotUseIt() throws {
        #expect(try context(pins: [try pki.pin(of: "self.pem")], pinOnly: true).verifiedChains == nil)
        let withCRL = try context(crl: true)
        #expect(withCRL.verifiedChains == nil)
        #expect(try handshake(withCRL).recorder.handshake != nil)  // the CRL revokes nothing
        #expect(try context().verifiedChains != nil)
    }

    @Test func theKeyIsTheParametersAndEveryPresentedCertificate() throws {
        let leaf = try certificate("good.pem")
        let root = try certificate("root.pem")
        let params: [UInt64] = [0, 0, 10, 2, 0]
        // libssl's presented list starts with the leaf itself: not counted twice.
        let alone = VerifiedChainCache.key(params: params, leaf: leaf, rest: nil)
        #expect(alone != nil)
        #expect(alone == VerifiedChainCache.key(params: params, leaf: leaf, rest: try stack(of: [leaf])))
        // One certificate more (an intermediate sent, or padding): another key.
        #expect(alone != VerifiedChainCache.key(params: params, leaf: leaf, rest: try stack(of: [leaf, root])))
        // Other verification parameters (depth): another key.
        #expect(alone != VerifiedChainCache.key(params: [0, 0, 9, 2, 0], leaf: leaf, rest: nil))
        // Past the size limit: no key, the chain is checked in full every time.
        #expect(VerifiedChainCache.key(params: params, leaf: leaf, rest: nil, limit: VerifiedChainCache.paramBytes + 64) == nil)
    }

    @Test func aCheckWithPerConnectionParametersIsNotKept() throws {
        let context = try context()
        let leaf = try certificate("good.pem")
        for setting in ["none", "host", "ip", "time"] {
            let store = try #require(X509_STORE_CTX_new())
            defer { X509_STORE_CTX_free(store) }
            #expect(X509_STORE_CTX_init(store, SSL_CTX_get_cert_store(context.ctx), leaf, nil) == 1)
            let param = X509_STORE_CTX_get0_param(store)
            switch setting {
            case "host": #expect(X509_VERIFY_PARAM_set1_host(param, "good.test", 0) == 1)
            case "ip": #expect(X509_VERIFY_PARAM_set1_ip_asc(param, "198.19.0.10") == 1)
            case "time": X509_VERIFY_PARAM_set_time(param, time(nil))
            default: break
            }
            let key = VerifiedChainCache.key(for: store, leaf: leaf)
            #expect((key != nil) == (setting == "none"), "\(setting)")
        }
    }

    @Test func anEntryHoldsForItsLifetimeAndNotBeforeItsCheck() throws {
        let context = try context()
        let cache = try #require(context.verifiedChains)
        #expect(try handshake(context).recorder.handshake != nil)
        let key = try #require(cache.keys.first)
        let now = time(nil)
        // A clock set back before the check: not trusted (and the entry is dropped).
        #expect(cache.chain(for: key, now: now - 60) == nil)
        #expect(cache.count == 0)
        #expect(try handshake(context).recorder.handshake != nil)
        let chain = try #require(cache.chain(for: key, now: now + VerifiedChainCache.lifetime - 5))
        #expect(tg_ssl_sk_x509_num(chain) == 2)  // leaf and root
        tg_ssl_sk_x509_free_all(chain)
        #expect(cache.chain(for: key, now: now + VerifiedChainCache.lifetime + 5) == nil)
        #expect(cache.count == 0)
    }

    @Test func anEntryNeverOutlivesTheChainsDates() throws {
        let context = try context()
        let cache = try #require(context.verifiedChains)
        #expect(try handshake(context).recorder.handshake != nil)
        let key = try #require(cache.keys.first)
        let chain = try #require(cache.chain(for: key))
        var notBefore: Int64 = 0
        var notAfter: Int64 = 0
        #expect(tg_ssl_chain_validity(chain, &notBefore, &notAfter) == 1)
        // The test PKI's certificates are valid 30 days each, made one after the other: the
        // latest notBefore (the leaf's) can be a second or more after the root's, whose
        // notAfter is the earliest.
        #expect((30 * 86400 - 60)...(30 * 86400) ~= notAfter - notBefore)
        // Kept 100 s before the first notAfter: gone at it, not 300 s later.
        let late = Int(notAfter) - 100
        cache.store(try #require(X509_chain_up_ref(chain)), for: key, now: late)
        let before = try #require(cache.chain(for: key, now: late + 99))
        tg_ssl_sk_x509_free_all(before)
        #expect(cache.chain(for: key, now: Int(notAfter)) == nil)
        // Checked at a time outside the dates: not kept at all.
        cache.store(try #require(X509_chain_up_ref(chain)), for: key, now: Int(notAfter) + 10)
        cache.store(chain, for: key, now: Int(notBefore) - 10)
        #expect(cache.count == 0)
    }

    @Test func capacityEvictsTheOldest() throws {
        let cache = VerifiedChainCache(capacity: 1)
        let (good, goodChain) = try verified(leaf: "good", identity: "good.test")
        let (wild, wildChain) = try verified(leaf: "wild", identity: "a.wild.test")
        #expect(good != wild)
        cache.store(goodChain, for: good)
        cache.store(wildChain, for: wild)
        #expect(cache.count == 1)
        #expect(cache.chain(for: good) == nil)
        let kept = try #require(cache.chain(for: wild))
        tg_ssl_sk_x509_free_all(kept)
    }

    @Test func threadsShareItSafely() throws {
        // Lookups, replacements and evictions at once from four threads (run under TSan and
        // ASan by Scripts/sanitize.sh): every chain handed out stays valid for its holder.
        let cache = VerifiedChainCache(capacity: 1)
        let (good, goodChain) = try verified(leaf: "good", identity: "good.test")
        let (wild, wildChain) = try verified(leaf: "wild", identity: "a.wild.test")
        cache.store(goodChain, for: good)
        /// An OpenSSL pointer handed between the threads (each use below is its own).
        struct Shared: @unchecked Sendable { let pointer: OpaquePointer }
        let goodShared = Shared(pointer: try #require(X509_chain_up_ref(goodChain)))
        defer { tg_ssl_sk_x509_free_all(goodShared.pointer) }
        let wildSpare = NIOLockedValueBox<Shared?>(Shared(pointer: wildChain))
        let found = NIOLockedValueBox(0)
        let bad = NIOLockedValueBox(0)
        DispatchQueue.concurrentPerform(iterations: 4) { worker in
            for round in 0..<300 {
                let key = worker % 2 == 0 ? good : wild
                guard let chain = cache.chain(for: key) else {
                    if worker == 1, round % 10 == 0, let spare = wildSpare.withLockedValue({ $0.take() }) {
                        cache.store(spare.pointer, for: wild)  // evicts `good` (capacity 1)
                    }
                    if worker == 0, round % 10 == 5, let spare = X509_chain_up_ref(goodShared.pointer) {
                        cache.store(spare, for: good)
                    }
                    continue
                }
                found.withLockedValue { $0 += 1 }
                if tg_ssl_sk_x509_num(chain) != 2 || X509_check_host(tg_ssl_sk_x509_value(chain, 0), worker % 2 == 0 ? "good.test" : "a.wild.test", 0, 0, nil) != 1 {
                    bad.withLockedValue { $0 += 1 }
                }
                tg_ssl_sk_x509_free_all(chain)
            }
        }
        #expect(found.withLockedValue { $0 } == cache.hits)
        #expect(cache.hits > 0)
        #expect(bad.withLockedValue { $0 } == 0)
        #expect(cache.count == 1)
    }

    /// A certificate read from the test PKI (one reference, not freed: the test is short).
    func certificate(_ name: String) throws -> OpaquePointer {
        let file = try #require(fopen(pki.path(name), "r"))
        defer { fclose(file) }
        return try #require(PEM_read_X509(file, nil, nil, nil))
    }

    /// A STACK_OF(X509) of `certificates` (not owning them).
    func stack(of certificates: [OpaquePointer]) throws -> OpaquePointer {
        let stack = try #require(OPENSSL_sk_new_null())
        for certificate in certificates { OPENSSL_sk_push(stack, UnsafeRawPointer(certificate)) }
        return stack
    }

    /// The key and a new reference to the verified chain of a handshake with `leaf`.
    func verified(leaf: String, identity: String) throws -> (VerifiedChainCache.Key, OpaquePointer) {
        let context = try context()
        #expect(try handshake(context, identity: .dnsName(identity), leaf: leaf).recorder.handshake != nil)
        let key = try #require(context.verifiedChains?.keys.first)
        return (key, try #require(context.verifiedChains?.chain(for: key)))
    }
}
