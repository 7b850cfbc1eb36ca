import COpenSSL
import CTLSGateOpenSSL
import NIOCore

#if canImport(Glibc)
import Glibc
#endif

/// Owns one OpenSSL `SSL` (client side) and its `ByteBufferBIO`; frees them exactly once.
///
/// Every call starts from a cleared error queue and maps OpenSSL's answer to a small enum,
/// so callers never see `SSL_get_error` codes.
final class TLSConnection {
    enum StepResult {
        case complete
        case wantRead
        case failed(TLSError)
    }

    enum ReadResult {
        case bytes(Int)
        case wantRead
        case closeNotify
        case failed(TLSError)
    }

    let context: TLSContext
    let sessionKey: String
    let identity: TLSPeerIdentity
    let bio: ByteBufferBIO
    private let ssl: OpaquePointer
    private var offeredSession = false
    /// Why tlsgate's own checks (pins, OCSP) refused the server, when they did.
    private(set) var verifyDetail: String?
    /// The server's leaf certificate, once seen (one reference owned, freed in deinit);
    /// summarised only when an error or a caller asks, not on every handshake.
    private var peerLeaf: OpaquePointer?
    /// The server's leaf certificate, once seen.
    var peerCertificate: TLSCertificateSummary? { peerLeaf.map(TLSCertificateSummary.init) }
    /// The staple verdict of the session offered for resumption: `.some(until)` when a
    /// session was offered (`until` nil: it had no verified staple), nil when none was.
    private var offeredStaple: NIODeadline?? = nil
    /// A good OCSP staple was verified in this handshake.
    private var stapleVerified = false
    /// Until when this connection's staple verdict holds (its nextUpdate): a good staple
    /// of this handshake, or the verdict of the session it resumed. Kept with the sessions
    /// the server issues on this connection.
    private(set) var stapleValidUntil: NIODeadline?
    /// `pin_only`: the pinned certificates the chain was checked against (owned, freed in
    /// deinit); the stapled OCSP response's signer must chain to them too.
    private var pinAnchors: OpaquePointer?

    init(
        context: TLSContext,
        identity: TLSPeerIdentity,
        sessionKey: String,
        allocator: ByteBufferAllocator
    ) throws(TLSError) {
        OpenSSLErrorQueue.clear()
        guard let ssl = SSL_new(context.ctx) else {
            throw OpenSSLErrorQueue.error(.configuration, "SSL_new failed")
        }
        let bio: ByteBufferBIO
        do {
            bio = try ByteBufferBIO(allocator: allocator)
        } catch {
            SSL_free(ssl)
            throw error
        }
        // The SSL owns the BIO from here (one reference for reading and writing).
        SSL_set_bio(ssl, bio.bio, bio.bio)
        self.ssl = ssl
        self.bio = bio
        self.context = context
        self.sessionKey = sessionKey
        self.identity = identity
        _ = tg_ssl_set_app_data(ssl, Unmanaged.passUnretained(self).toOpaque())
        try configureIdentity()
        offeredStaple = context.sessions.apply(
            to: ssl, key: sessionKey, needsStaple: context.configuration.ocsp == .requireStapled)
        offeredSession = SSL_get_session(ssl) != nil
        SSL_set_connect_state(ssl)
    }

    deinit {
        _ = tg_ssl_set_app_data(ssl, nil)
        SSL_free(ssl)
        if let pinAnchors { X509_STORE_free(pinAnchors) }
        if let peerLeaf { X509_free(peerLeaf) }
    }

    private func configureIdentity() throws(TLSError) {
        // The name itself is checked in verifyPeer; here only SNI (never for an IP).
        if case .dnsName(let name) = identity {
            guard tg_ssl_set_tlsext_host_name(ssl, name) == 1 else {
                throw OpenSSLErrorQueue.error(.configuration, "cannot set SNI \(name)")
            }
        }
        if context.configuration.ocsp != .off {
            _ = tg_ssl_set_tlsext_status_type_ocsp(ssl)
        }
    }

    // MARK: verification

    /// The whole certificate check, run by OpenSSL during the handshake: the chain to a
    /// trust anchor (with CRLs when the policy has them), then the identity — the expected
    /// name or IP, or one of `acceptedNames`; wildcards match one whole label; the
    /// subject CN counts only when the certificate has no DNS SAN — then the pins, which
    /// match when any certificate of the verified chain has a pinned SPKI. With `pinOnly`
    /// a presented certificate must match a pin and the leaf must be within its dates.
    /// Returns 1 to go on, 0 to fail with the error set on `store`.
    func verifyPeer(_ store: OpaquePointer) -> Int32 {
        let configuration = context.configuration
        guard let leaf = X509_STORE_CTX_get0_cert(store) else { return 0 }
        if leaf != peerLeaf, X509_up_ref(leaf) == 1 {
            if let old = peerLeaf { X509_free(old) }
            peerLeaf = leaf
        }
        if configuration.pinOnly {
            return verifyPinOnly(store, leaf: leaf)
        }
        guard verifyChain(store, leaf: leaf) else { return 0 }
        guard identityMatches(leaf) else {
            if case .ipAddress = identity {
                X509_STORE_CTX_set_error(store, X509_V_ERR_IP_ADDRESS_MISMATCH)
            } else {
                X509_STORE_CTX_set_error(store, X509_V_ERR_HOSTNAME_MISMATCH)
            }
            return 0
        }
        if !configuration.pins.isEmpty {
            guard Self.certificates(X509_STORE_CTX_get0_chain(store)).contains(where: isPinned) else {
                return refuse(store, "no certificate of the verified chain matches the policy's pins")
            }
        }
        return 1
    }

    /// The chain from the presented certificates to a trust anchor: `X509_verify_cert`, or
    /// the chain this context verified for the very same certificates moments ago
    /// (`VerifiedChainCache`), which becomes this connection's verified chain. False: the
    /// error is set on `store`.
    private func verifyChain(_ store: OpaquePointer, leaf: OpaquePointer) -> Bool {
        guard let cache = context.verifiedChains, let key = VerifiedChainCache.key(for: store, leaf: leaf) else {
            return X509_verify_cert(store) == 1
        }
        if let chain = cache.chain(for: key) {
            X509_STORE_CTX_set0_verified_chain(store, chain)  // takes the reference
            return true
        }
        guard X509_verify_cert(store) == 1 else { return false }
        if let chain = X509_STORE_CTX_get1_chain(store) { cache.store(chain, for: key) }
        return true
    }

    /// `pin_only`: the presented chain must lead, by its signatures, from the leaf (whose key
    /// signed the handshake) to a pinned certificate; a pinned certificate merely appended to
    /// someone else's chain proves nothing. Dates, purpose and depth are checked as usual.
    private func verifyPinOnly(_ store: OpaquePointer, leaf: OpaquePointer) -> Int32 {
        let configuration = context.configuration
        let untrusted = X509_STORE_CTX_get0_untrusted(store)
        let pinned = ([leaf] + Self.certificates(untrusted)).filter(isPinned)
        guard !pinned.isEmpty else {
            return refuse(store, "no certificate the server presented matches the policy's pins (pin_only)")
        }
        guard let anchors = X509_STORE_new() else { return refuse(store, "out of memory") }
        if let old = pinAnchors { X509_STORE_free(old) }
        pinAnchors = anchors  // freed in deinit; the OCSP check uses it too
        for cert in pinned { _ = X509_STORE_add_cert(anchors, cert) }
        var flags = UInt(X509_V_FLAG_PARTIAL_CHAIN)
        if !configuration.crlFiles.isEmpty {
            // The policy's CRLs apply under pin_only too: the leaf is checked against them
            // (issued by the next certificate of the chain that leads to the pin).
            _ = tg_ssl_store_copy_crls(SSL_CTX_get_cert_store(context.ctx), anchors)
            flags |= UInt(X509_V_FLAG_CRL_CHECK)
        }
        X509_STORE_set_flags(anchors, flags)
        X509_STORE_set_depth(anchors, Int32(max(1, configuration.verifyDepth)))
        guard let check = X509_STORE_CTX_new() else { return refuse(store, "out of memory") }
        defer { X509_STORE_CTX_free(check) }
        guard X509_STORE_CTX_init(check, anchors, leaf, untrusted) == 1 else {
            return refuse(store, "cannot check the chain against the pins")
        }
        _ = X509_STORE_CTX_set_default(check, "ssl_server")
        if X509_verify_cert(check) == 1 {
            // The chain that leads to the pin becomes the connection's verified chain
            // (OpenSSL copies it from `store`): the OCSP check and the logs see it.
            X509_STORE_CTX_set0_verified_chain(store, X509_STORE_CTX_get1_chain(check))
            return 1
        }
        let code = X509_STORE_CTX_get_error(check)
        OpenSSLErrorQueue.clear()
        switch code {
        case X509_V_ERR_CERT_HAS_EXPIRED, X509_V_ERR_CERT_NOT_YET_VALID, X509_V_ERR_INVALID_PURPOSE,
            X509_V_ERR_CERT_CHAIN_TOO_LONG, X509_V_ERR_CERT_REVOKED, X509_V_ERR_CRL_HAS_EXPIRED,
            X509_V_ERR_CRL_NOT_YET_VALID, X509_V_ERR_UNABLE_TO_GET_CRL, X509_V_ERR_CRL_SIGNATURE_FAILURE:
            X509_STORE_CTX_set_error(store, code)
            return 0
        default:
            let why = String(cString: X509_verify_cert_error_string(Int(code)))
            return refuse(store, "the server's certificate does not chain to a pinned certificate (pin_only): \(why)")
        }
    }

    /// The certificates of an OpenSSL `STACK_OF(X509)` (borrowed, not owned).
    static func certificates(_ stack: OpaquePointer?) -> [OpaquePointer] {
        (0..<tg_ssl_sk_x509_num(stack)).compactMap { tg_ssl_sk_x509_value(stack, $0) }
    }

    private func refuse(_ store: OpaquePointer, _ detail: String) -> Int32 {
        verifyDetail = detail
        X509_STORE_CTX_set_error(store, X509_V_ERR_APPLICATION_VERIFICATION)
        return 0
    }

    private func isPinned(_ cert: OpaquePointer) -> Bool {
        guard let digest = TLSCertificateSummary.spkiDigest(cert) else { return false }
        return context.configuration.pins.contains(digest)
    }

    private func identityMatches(_ leaf: OpaquePointer) -> Bool {
        let flags = UInt32(X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS)
        func matches(_ name: String) -> Bool {
            if Self.isIPLiteral(name) { return X509_check_ip_asc(leaf, name, 0) == 1 }
            return X509_check_host(leaf, name, name.utf8.count, flags, nil) == 1
        }
        return matches(identity.description) || context.configuration.acceptedNames.contains(where: matches)
    }

    static func isIPLiteral(_ text: String) -> Bool {
        var v4 = in_addr()
        var v6 = in6_addr()
        return inet_pton(AF_INET, text, &v4) == 1 || inet_pton(AF_INET6, text, &v6) == 1
    }

    /// The staple verdict of the resumed session holds: the handshake resumed the session
    /// offered, and that session's good staple is not past its nextUpdate.
    private var resumedStapleHolds: Bool {
        guard SSL_session_reused(ssl) == 1, case .some(.some(let until)) = offeredStaple else { return false }
        return until > .now()
    }

    /// Checks the stapled OCSP response; 1 to go on, 0 to fail the handshake.
    ///
    /// A resumed handshake carries no staple (TLS 1.3 still calls this): it goes on when
    /// the session it resumed was made with a good staple that still holds.
    func checkStaple() -> Int32 {
        var response: UnsafePointer<UInt8>? = nil
        let length = tg_ssl_get_tlsext_status_ocsp_resp(ssl, &response)
        guard length > 0, let response else {
            if resumedStapleHolds {
                if case .some(.some(let until)) = offeredStaple { stapleValidUntil = until }
                return 1
            }
            if context.configuration.ocsp == .requireStapled {
                verifyDetail = "the server stapled no OCSP response (ocsp = require-stapled)"
                return 0
            }
            return 1
        }
        var reason = [CChar](repeating: 0, count: 256)
        var secondsLeft = -1
        // Under pin_only the responder must chain to the pins, like the server.
        let anchors = pinAnchors ?? SSL_CTX_get_cert_store(context.ctx)
        let ok = tg_ssl_check_ocsp(
            response, length, SSL_get0_verified_chain(ssl), anchors, &reason, reason.count, &secondsLeft)
        if ok != 1 {
            verifyDetail = reason.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
            return 0
        }
        stapleVerified = true
        stapleValidUntil = secondsLeft >= 0 ? .now() + .seconds(Int64(secondsLeft)) : nil
        return 1
    }

    /// What must hold after every handshake, full or resumed, before a byte is relayed:
    /// the server presented a certificate (no anonymous suite), OpenSSL's verification
    /// result is X509_V_OK under the policy's rules, tlsgate's own checks passed, and under
    /// `ocsp = require-stapled` a good staple was seen (or the resumed session's holds).
    /// Returns nil when they do, else the verification error.
    func verifiedHandshakeError() -> TLSError? {
        let verify = SSL_get_verify_result(ssl)
        func failure(_ message: String, code: Int = Int(X509_V_ERR_APPLICATION_VERIFICATION)) -> TLSError {
            TLSError(
                kind: .verificationFailed, reasons: OpenSSLErrorQueue.drain(), verifyCode: code,
                verifyMessage: message, peerCertificate: peerCertificate)
        }
        guard SSL_get0_peer_certificate(ssl) != nil else {
            let cipher = SSL_get_current_cipher(ssl).map { String(cString: SSL_CIPHER_get_name($0)) } ?? "none"
            return failure("the server presented no certificate (cipher \(cipher)): nothing was verified")
        }
        guard verify == X509_V_OK else {
            return failure(verifyDetail ?? String(cString: X509_verify_cert_error_string(verify)), code: Int(verify))
        }
        if let verifyDetail { return failure(verifyDetail) }
        if context.configuration.ocsp == .requireStapled && !stapleVerified && !resumedStapleHolds {
            return failure("the server stapled no OCSP response (ocsp = require-stapled)")
        }
        return nil
    }

    /// Whether a session the server issued on this connection may be kept for resumption:
    /// only one of a verified server (the session callback runs before the end of a TLS 1.2
    /// handshake, so this checks again rather than rely on the post-handshake check).
    func mayCacheSession(_ session: OpaquePointer) -> Bool {
        guard SSL_SESSION_get0_peer(session) != nil, SSL_get_verify_result(ssl) == X509_V_OK, verifyDetail == nil
        else { return false }
        if context.configuration.ocsp == .requireStapled {
            if resumedStapleHolds, case .some(.some(let until)) = offeredStaple { stapleValidUntil = until }
            return stapleVerified || resumedStapleHolds
        }
        return true
    }

    /// Drives the handshake with whatever ciphertext the BIO holds.
    func handshake() -> StepResult {
        OpenSSLErrorQueue.clear()
        let rc = SSL_do_handshake(ssl)
        if rc == 1 {
            if let error = verifiedHandshakeError() {
                context.sessions.remove(sessionKey)
                return .failed(error)
            }
            return .complete
        }
        let error = SSL_get_error(ssl, rc)
        switch error {
        case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE:
            return .wantRead
        default:
            if offeredSession { context.sessions.remove(sessionKey) }
            return .failed(handshakeError(code: error))
        }
    }

    private func handshakeError(code: Int32) -> TLSError {
        let reasons = OpenSSLErrorQueue.drain()
        let verify = SSL_get_verify_result(ssl)
        if verify != X509_V_OK || verifyDetail != nil {
            let message = verifyDetail ?? String(cString: X509_verify_cert_error_string(verify))
            return TLSError(
                kind: .verificationFailed, reasons: reasons, verifyCode: Int(verify), verifyMessage: message,
                peerCertificate: peerCertificate)
        }
        if code == SSL_ERROR_SYSCALL || (reasons.isEmpty && bio.peerClosed) || reasons.contains(where: {
            $0.contains("unexpected eof")
        }) {
            return TLSError(kind: .closedDuringHandshake, reasons: reasons, context: "server closed the connection during the handshake")
        }
        return TLSError(kind: .handshakeFailed, reasons: reasons, peerCertificate: peerCertificate)
    }

    /// Decrypts into `destination`.
    func read(into destination: UnsafeMutableRawBufferPointer) -> ReadResult {
        OpenSSLErrorQueue.clear()
        var count = 0
        let rc = SSL_read_ex(ssl, destination.baseAddress, destination.count, &count)
        if rc == 1 { return .bytes(count) }
        let error = SSL_get_error(ssl, rc)
        switch error {
        case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE:
            return .wantRead
        case SSL_ERROR_ZERO_RETURN:
            return .closeNotify
        default:
            let reasons = OpenSSLErrorQueue.drain()
            if bio.peerClosed && (error == SSL_ERROR_SYSCALL || reasons.contains(where: { $0.contains("unexpected eof") })) {
                return .failed(TLSError(kind: .uncleanShutdown, reasons: reasons, context: "server closed TCP without close_notify"))
            }
            return .failed(TLSError(kind: .protocolError, reasons: reasons))
        }
    }

    /// Encrypts all of `source` into the BIO's outbound buffer.
    func write(_ source: UnsafeRawBufferPointer) -> TLSError? {
        var offset = 0
        while offset < source.count {
            OpenSSLErrorQueue.clear()
            var written = 0
            let rc = SSL_write_ex(ssl, source.baseAddress! + offset, source.count - offset, &written)
            if rc != 1 {
                let error = SSL_get_error(ssl, rc)
                if error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE {
                    // Our BIO never blocks on write; this only happens mid-renegotiation,
                    // which is disabled. Treat it as a protocol error rather than spin.
                    return TLSError(kind: .protocolError, reasons: OpenSSLErrorQueue.drain(), context: "write would block")
                }
                return TLSError(kind: .protocolError, reasons: OpenSSLErrorQueue.drain())
            }
            offset += written
        }
        return nil
    }

    /// Ciphertext or decrypted bytes wait, in the BIO or inside OpenSSL: another `SSL_read`
    /// has something to work on. False: it could only answer "want read" (unless the peer
    /// closed TCP, when it reports the EOF).
    var hasPendingInput: Bool { bio.hasBufferedInbound || SSL_has_pending(ssl) == 1 }

    /// Gives the record layer's buffers back to the allocator when nothing waits in them.
    ///
    /// With `SSL_MODE_RELEASE_BUFFERS` OpenSSL frees its 16.7 KiB read buffer once a record
    /// is consumed, but any `SSL_read` that ends in "want read" sets it up again first, and
    /// it then stayed allocated while the connection idled (measured: 17.6 KiB of 41.6 KiB
    /// per idle relayed connection). The read loop no longer makes that call when nothing
    /// is left (`hasPendingInput`); this catches the other cases (a burst of post-handshake
    /// messages only). Does nothing while ciphertext is buffered here or in OpenSSL (a
    /// partial record stays where it is), so no byte is dropped.
    func releaseIdleBuffers() {
        guard !hasPendingInput else { return }
        _ = SSL_free_buffers(ssl)
    }

    /// Queues close_notify in the outbound buffer. Safe to call more than once.
    func shutdown() {
        OpenSSLErrorQueue.clear()
        if SSL_get_shutdown(ssl) & SSL_SENT_SHUTDOWN == 0 {
            _ = SSL_shutdown(ssl)
        }
        OpenSSLErrorQueue.clear()
    }

    /// What the handshake settled. `includingChain`: also summarise the server's chain
    /// (names, fingerprints, pins: for `tlsgate probe`; the relay does not pay for it).
    func handshakeInfo(includingChain: Bool) -> TLSHandshakeInfo {
        let version = String(cString: SSL_get_version(ssl))
        let cipher = SSL_get_current_cipher(ssl).map { String(cString: SSL_CIPHER_get_name($0)) } ?? "none"
        var alpnData: UnsafePointer<UInt8>? = nil
        var alpnLength: UInt32 = 0
        SSL_get0_alpn_selected(ssl, &alpnData, &alpnLength)
        let alpn = alpnData.map { String(decoding: UnsafeBufferPointer(start: $0, count: Int(alpnLength)), as: UTF8.self) }
        let chain = includingChain ? Self.certificates(SSL_get_peer_cert_chain(ssl)).map(TLSCertificateSummary.init) : []
        return TLSHandshakeInfo(
            version: version, cipher: cipher, resumed: SSL_session_reused(ssl) == 1, alpn: alpn, peerChain: chain)
    }
}
