import COpenSSL
import CTLSGateOpenSSL

/// What a log line or `tlsgate probe` says about one certificate.
public struct TLSCertificateSummary: Sendable, Equatable {
    /// RFC 2253 names.
    public let subject: String
    public let issuer: String
    /// "DNS:a.example,IP:198.19.0.10".
    public let subjectAltNames: String
    /// "2027-01-01T00:00:00Z".
    public let notAfter: String
    /// SHA-256 of the DER certificate, lower-case hex.
    public let sha256Fingerprint: String
    /// The certificate's SPKI pin, "sha256/BASE64", as policies write it.
    public let spkiPin: String

    init(_ x509: OpaquePointer) {
        var buffer = [CChar](repeating: 0, count: 1024)
        func text(_ fill: (UnsafeMutablePointer<CChar>, Int) -> Void) -> String {
            buffer.withUnsafeMutableBufferPointer { pointer in
                fill(pointer.baseAddress!, pointer.count)
                return String(cString: pointer.baseAddress!)
            }
        }
        subject = text { tg_ssl_x509_name(X509_get_subject_name(x509), $0, $1) }
        issuer = text { tg_ssl_x509_name(X509_get_issuer_name(x509), $0, $1) }
        subjectAltNames = text { tg_ssl_x509_sans(x509, $0, $1) }
        notAfter = text { tg_ssl_x509_not_after(x509, $0, $1) }
        var digest = [UInt8](repeating: 0, count: 32)
        sha256Fingerprint = tg_ssl_x509_fingerprint(x509, &digest) == 1
            ? digest.map { String(format2: $0) }.joined() : "?"
        spkiPin = Self.spkiDigest(x509).map { "sha256/" + Base64.encode($0) } ?? "?"
    }

    static func spkiDigest(_ x509: OpaquePointer) -> [UInt8]? {
        var digest = [UInt8](repeating: 0, count: 32)
        return tg_ssl_x509_spki_sha256(x509, &digest) == 1 ? digest : nil
    }
}

extension String {
    /// Two lower-case hex digits.
    init(format2 byte: UInt8) {
        let digits = Array("0123456789abcdef")
        self.init([digits[Int(byte >> 4)], digits[Int(byte & 0xf)]])
    }
}

/// Standard base64 (RFC 4648, with padding), for showing pins.
enum Base64 {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")

    static func encode(_ bytes: [UInt8]) -> String {
        var out = ""
        var i = 0
        while i < bytes.count {
            let b0 = bytes[i]
            let b1 = i + 1 < bytes.count ? bytes[i + 1] : 0
            let b2 = i + 2 < bytes.count ? bytes[i + 2] : 0
            out.append(alphabet[Int(b0 >> 2)])
            out.append(alphabet[Int((b0 & 0x3) << 4 | b1 >> 4)])
            out.append(i + 1 < bytes.count ? alphabet[Int((b1 & 0xf) << 2 | b2 >> 6)] : "=")
            out.append(i + 2 < bytes.count ? alphabet[Int(b2 & 0x3f)] : "=")
            i += 3
        }
        return out
    }
}
