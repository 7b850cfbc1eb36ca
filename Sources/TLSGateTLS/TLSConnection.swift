import COpenSSL
import CTLSGateOpenSSL
import NIOCore

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
        context.sessions.apply(to: ssl, key: sessionKey)
        offeredSession = SSL_get_session(ssl) != nil
        SSL_set_connect_state(ssl)
    }

    deinit {
        _ = tg_ssl_set_app_data(ssl, nil)
        SSL_free(ssl)
    }

    private func configureIdentity() throws(TLSError) {
        let param = SSL_get0_param(ssl)
        // "*.example.com" matches one label only, and never "w*.example.com".
        X509_VERIFY_PARAM_set_hostflags(param, UInt32(X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS))
        switch identity {
        case .dnsName(let name):
            guard SSL_set1_host(ssl, name) == 1 else {
                throw OpenSSLErrorQueue.error(.configuration, "cannot set expected host name \(name)")
            }
            guard tg_ssl_set_tlsext_host_name(ssl, name) == 1 else {
                throw OpenSSLErrorQueue.error(.configuration, "cannot set SNI \(name)")
            }
        case .ipAddress(let address):
            guard X509_VERIFY_PARAM_set1_ip_asc(param, address) == 1 else {
                throw OpenSSLErrorQueue.error(.configuration, "cannot set expected IP address \(address)")
            }
        }
    }

    /// Drives the handshake with whatever ciphertext the BIO holds.
    func handshake() -> StepResult {
        OpenSSLErrorQueue.clear()
        let rc = SSL_do_handshake(ssl)
        if rc == 1 { return .complete }
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
        if verify != X509_V_OK {
            let message = String(cString: X509_verify_cert_error_string(verify))
            return TLSError(
                kind: .verificationFailed, reasons: reasons, verifyCode: Int(verify), verifyMessage: message)
        }
        if code == SSL_ERROR_SYSCALL || (reasons.isEmpty && bio.peerClosed) || reasons.contains(where: {
            $0.contains("unexpected eof")
        }) {
            return TLSError(kind: .closedDuringHandshake, reasons: reasons, context: "server closed the connection during the handshake")
        }
        return TLSError(kind: .handshakeFailed, reasons: reasons)
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

    /// Queues close_notify in the outbound buffer. Safe to call more than once.
    func shutdown() {
        OpenSSLErrorQueue.clear()
        if SSL_get_shutdown(ssl) & SSL_SENT_SHUTDOWN == 0 {
            _ = SSL_shutdown(ssl)
        }
        OpenSSLErrorQueue.clear()
    }

    var handshakeInfo: TLSHandshakeInfo {
        let version = String(cString: SSL_get_version(ssl))
        let cipher = SSL_get_current_cipher(ssl).map { String(cString: SSL_CIPHER_get_name($0)) } ?? "none"
        var alpnData: UnsafePointer<UInt8>? = nil
        var alpnLength: UInt32 = 0
        SSL_get0_alpn_selected(ssl, &alpnData, &alpnLength)
        let alpn = alpnData.map { String(decoding: UnsafeBufferPointer(start: $0, count: Int(alpnLength)), as: UTF8.self) }
        return TLSHandshakeInfo(version: version, cipher: cipher, resumed: SSL_session_reused(ssl) == 1, alpn: alpn)
    }
}
