import COpenSSL
import CTLSGateOpenSSL

/// Owns one OpenSSL RSA `EVP_PKEY` (a key pair, or a public key read from PEM) and frees it
/// once. RSA-OAEP with SHA-1 and MGF1 SHA-1, the padding MySQL's and MariaDB's clients use
/// for caching_sha2_password's password exchange. Safe to share between event loops: every
/// operation makes its own `EVP_PKEY_CTX` and the key itself is never changed.
public final class RSAKey: Sendable {
    // Set once in init and freed once in deinit; only read in between.
    nonisolated(unsafe) private let key: OpaquePointer
    /// The modulus size in bits.
    public let bits: Int
    /// The size of a ciphertext (and of the modulus) in bytes.
    public let size: Int
    /// The public key as PEM (SubjectPublicKeyInfo, `-----BEGIN PUBLIC KEY-----`).
    public let publicKeyPEM: [UInt8]

    /// The largest PEM public key the wrapper writes (an 8192-bit key's is about 1.5 KiB).
    static let maxPEM = 4096

    /// A new key pair of `bits` (at least 2048).
    public static func generate(bits: Int) throws(RSAKeyError) -> RSAKey {
        guard (2048...8192).contains(bits) else {
            throw RSAKeyError(context: "an RSA key of \(bits) bits: between 2048 and 8192 only")
        }
        OpenSSLErrorQueue.clear()
        guard let key = tg_ssl_rsa_generate(UInt32(bits)) else {
            throw RSAKeyError(context: "generating a \(bits)-bit RSA key failed", reasons: OpenSSLErrorQueue.drain())
        }
        return try RSAKey(owning: key)
    }

    /// A public key (only encryption works) from PEM.
    public convenience init(publicKeyPEM pem: [UInt8]) throws(RSAKeyError) {
        OpenSSLErrorQueue.clear()
        let read = pem.withUnsafeBufferPointer { tg_ssl_pkey_read_public_pem($0.baseAddress, $0.count) }
        guard let key = read else {
            throw RSAKeyError(context: "not a PEM public key", reasons: OpenSSLErrorQueue.drain())
        }
        try self.init(owning: key)
    }

    private init(owning key: OpaquePointer) throws(RSAKeyError) {
        self.key = key
        bits = Int(EVP_PKEY_get_bits(key))
        size = Int(EVP_PKEY_get_size(key))
        var pem = [UInt8](repeating: 0, count: Self.maxPEM)
        let length = pem.withUnsafeMutableBufferPointer { tg_ssl_pkey_public_pem(key, $0.baseAddress, $0.count) }
        pem.removeSubrange(max(0, length)...)
        publicKeyPEM = pem
        // Every stored property is set: if this throws, deinit frees the key.
        guard EVP_PKEY_get_base_id(key) == EVP_PKEY_RSA else {
            throw RSAKeyError(context: "not an RSA key")
        }
        guard length > 0 else {
            throw RSAKeyError(context: "writing the public key as PEM failed", reasons: OpenSSLErrorQueue.drain())
        }
    }

    deinit {
        EVP_PKEY_free(key)
    }

    /// RSA-OAEP encryption with the public key (what a client does).
    public func encrypt(_ plaintext: [UInt8]) throws(RSAKeyError) -> [UInt8] {
        try run(decrypt: false, plaintext, "encrypting")
    }

    /// RSA-OAEP decryption with the private key. `ciphertext` must be exactly `size` bytes;
    /// any failure (another key, bad padding) is one error without detail, so that the
    /// caller cannot tell padding failures apart.
    public func decrypt(_ ciphertext: [UInt8]) throws(RSAKeyError) -> [UInt8] {
        guard ciphertext.count == size else {
            throw RSAKeyError(context: "the ciphertext is \(ciphertext.count) bytes, not the key's \(size)")
        }
        do {
            return try run(decrypt: true, ciphertext, "decrypting")
        } catch {
            throw RSAKeyError(context: "decrypting failed (not encrypted with this key, or damaged)")
        }
    }

    private func run(decrypt: Bool, _ input: [UInt8], _ what: String) throws(RSAKeyError) -> [UInt8] {
        OpenSSLErrorQueue.clear()
        var output = [UInt8](repeating: 0, count: size)
        var length = output.count  // size_t: Int in Swift
        let ok = input.withUnsafeBufferPointer { source in
            output.withUnsafeMutableBufferPointer { target in
                tg_ssl_rsa_oaep(key, decrypt ? 1 : 0, source.baseAddress, source.count, target.baseAddress, &length)
            }
        }
        guard ok == 1, length <= output.count else {
            SecretBytes.wipe(&output)  // whatever a failed decryption left
            throw RSAKeyError(context: "\(what) failed", reasons: OpenSSLErrorQueue.drain())
        }
        output.removeSubrange(length...)
        return output
    }
}
