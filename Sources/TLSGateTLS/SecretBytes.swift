import COpenSSL
import NIOCore

/// Overwrites secrets (a decrypted password) in place once used, so that freed memory does
/// not keep them for a later over-read or a core file to find. `OPENSSL_cleanse`: a store
/// the compiler may not drop as dead.
///
/// Only storage this value owns alone is wiped in place: a shared array or buffer would be
/// copied first (copy-on-write) and the copy wiped, so call these where the last other
/// reference is gone.
public enum SecretBytes {
    public static func wipe(_ bytes: inout [UInt8]) {
        bytes.withUnsafeMutableBytes { raw in
            if let base = raw.baseAddress { OPENSSL_cleanse(base, raw.count) }
        }
    }

    /// The readable bytes of `buffer`.
    public static func wipe(_ buffer: inout ByteBuffer) {
        buffer.withUnsafeMutableReadableBytes { raw in
            if let base = raw.baseAddress { OPENSSL_cleanse(base, raw.count) }
        }
    }
}
