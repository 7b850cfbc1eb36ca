import COpenSSL
import CTLSGateOpenSSL
import NIOCore

/// The server end of an in-memory TLS connection, driven by hand over two memory BIOs.
final class InMemoryTLSServer {
    /// A server SSL_CTX; share one between servers to let clients resume sessions.
    final class Context {
        let ctx: OpaquePointer
        init(certificate: String, key: String, minVersion: Int32 = 0x0303, maxVersion: Int32 = 0) {
            ctx = SSL_CTX_new(TLS_server_method())!
            if minVersion < 0x0303 { SSL_CTX_set_security_level(ctx, 0) }
            precondition(SSL_CTX_use_certificate_chain_file(ctx, certificate) == 1)
            precondition(SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) == 1)
            _ = tg_ssl_ctx_set_min_proto_version(ctx, minVersion)
            if maxVersion != 0 { _ = tg_ssl_ctx_set_max_proto_version(ctx, maxVersion) }
        }
        /// A server with no certificate at all, offering only anonymous TLS 1.2 suites
        /// (what `openssl s_server -nocert -cipher 'aNULL:@SECLEVEL=0' -tls1_2` does).
        init(anonymous: Void) {
            ctx = SSL_CTX_new(TLS_server_method())!
            precondition(SSL_CTX_set_cipher_list(ctx, "aNULL:@SECLEVEL=0") == 1)
            _ = tg_ssl_ctx_set_max_proto_version(ctx, 0x0303)
        }
        deinit { SSL_CTX_free(ctx) }
    }

    private let context: Context
    private let ssl: OpaquePointer
    private let rbio: OpaquePointer
    private let wbio: OpaquePointer
    private(set) var handshakeDone = false
    private(set) var received: [UInt8] = []
    private(set) var gotCloseNotify = false

    convenience init(certificate: String, key: String, minVersion: Int32 = 0x0303, maxVersion: Int32 = 0) {
        self.init(context: Context(certificate: certificate, key: key, minVersion: minVersion, maxVersion: maxVersion))
    }

    init(context: Context) {
        self.context = context
        ssl = SSL_new(context.ctx)!
        rbio = BIO_new(BIO_s_mem())!
        wbio = BIO_new(BIO_s_mem())!
        SSL_set_bio(ssl, rbio, wbio)
        SSL_set_accept_state(ssl)
    }

    deinit {
        SSL_free(ssl)
    }

    /// Takes ciphertext from the client, advances the server, returns ciphertext for it.
    func receive(_ buffer: ByteBuffer) -> ByteBuffer {
        buffer.withUnsafeReadableBytes { bytes in
            if bytes.count > 0 { _ = BIO_write(rbio, bytes.baseAddress, Int32(bytes.count)) }
        }
        step()
        return drain()
    }

    func send(_ bytes: [UInt8]) -> ByteBuffer {
        var written = 0
        _ = SSL_write_ex(ssl, bytes, bytes.count, &written)
        return drain()
    }

    func sendCloseNotify() -> ByteBuffer {
        _ = SSL_shutdown(ssl)
        return drain()
    }

    private func step() {
        if !handshakeDone {
            if SSL_do_handshake(ssl) == 1 { handshakeDone = true } else { ERR_clear_error(); return }
        }
        var chunk = [UInt8](repeating: 0, count: 16384)
        while true {
            var n = 0
            let rc = SSL_read_ex(ssl, &chunk, chunk.count, &n)
            if rc == 1 { received.append(contentsOf: chunk[0..<n]); continue }
            if SSL_get_error(ssl, rc) == SSL_ERROR_ZERO_RETURN { gotCloseNotify = true }
            ERR_clear_error()
            break
        }
    }

    private func drain() -> ByteBuffer {
        var out = ByteBuffer()
        var chunk = [UInt8](repeating: 0, count: 16384)
        while true {
            let n = BIO_read(wbio, &chunk, Int32(chunk.count))
            if n <= 0 { break }
            out.writeBytes(chunk[0..<Int(n)])
        }
        return out
    }
}
