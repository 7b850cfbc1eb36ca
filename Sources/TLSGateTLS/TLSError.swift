import CTLSGateOpenSSL

/// A TLS failure, carrying OpenSSL's own reason strings.
///
/// `Kind` is a struct over a private enum so that new kinds never break callers.
public struct TLSError: Error, Sendable, CustomStringConvertible {
    public struct Kind: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Hashable, Sendable {
            case configuration
            case verificationFailed = "verification failed"
            case handshakeFailed = "handshake failed"
            case protocolError = "protocol error"
            case uncleanShutdown = "closed without close_notify"
            case closedDuringHandshake = "closed during handshake"
        }
        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// A context or connection could not be set up (bad CA file, bad key, …).
        public static let configuration = Kind(.configuration)
        /// The peer's certificate failed verification (chain, name, validity…).
        public static let verificationFailed = Kind(.verificationFailed)
        /// The handshake failed for another reason (protocol version, alert, cipher…).
        public static let handshakeFailed = Kind(.handshakeFailed)
        /// A TLS error after the handshake (bad record, alert).
        public static let protocolError = Kind(.protocolError)
        /// The peer closed TCP without sending close_notify: the data may be truncated.
        public static let uncleanShutdown = Kind(.uncleanShutdown)
        /// The peer closed TCP before the handshake finished.
        public static let closedDuringHandshake = Kind(.closedDuringHandshake)

        public var description: String { base.rawValue }
    }

    public let kind: Kind
    /// OpenSSL's error queue at the time of failure, oldest first (e.g. "SSL routines: certificate verify failed").
    public let reasons: [String]
    /// The X509 verification result code when verification failed (`X509_V_ERR_*`).
    public let verifyCode: Int?
    /// OpenSSL's text for `verifyCode`, e.g. "certificate has expired".
    public let verifyMessage: String?
    /// A short context string from tlsgate itself.
    public let context: String?
    /// The server's certificate, when it sent one (for the audit log).
    public let peerCertificate: TLSCertificateSummary?
    /// For a `.configuration` error: the setting OpenSSL refused.
    public let setting: TLSSetting?

    public init(
        kind: Kind,
        reasons: [String] = [],
        verifyCode: Int? = nil,
        verifyMessage: String? = nil,
        context: String? = nil,
        peerCertificate: TLSCertificateSummary? = nil,
        setting: TLSSetting? = nil
    ) {
        self.kind = kind
        self.reasons = reasons
        self.verifyCode = verifyCode
        self.verifyMessage = verifyMessage
        self.context = context
        self.peerCertificate = peerCertificate
        self.setting = setting
    }

    /// One line for logs: the most specific reason first.
    public var detail: String {
        if let verifyMessage { return verifyMessage }
        if let last = reasons.last { return last }
        if let context { return context }
        return kind.description
    }

    public var description: String {
        var parts = ["TLS \(kind)"]
        if let context { parts.append(context) }
        if let verifyMessage, let verifyCode { parts.append("\(verifyMessage) (verify error \(verifyCode))") }
        if !reasons.isEmpty { parts.append(reasons.joined(separator: "; ")) }
        return parts.joined(separator: ": ")
    }
}

/// The `TLSClientConfiguration` setting a configuration error is about, so that callers
/// can point at the line that set it.
public enum TLSSetting: String, Sendable, Hashable {
    case trust, minVersion, maxVersion, ciphers, ciphersuites, groups, signatureAlgorithms
    case clientCertificate, clientKey, crl, alpn
}

/// Reads and empties OpenSSL's thread-local error queue.
enum OpenSSLErrorQueue {
    static func drain() -> [String] {
        var reasons: [String] = []
        var buffer = [CChar](repeating: 0, count: 256)
        while true {
            let code = buffer.withUnsafeMutableBufferPointer { tg_ssl_err_get_error($0.baseAddress, $0.count) }
            if code == 0 { break }
            reasons.append(buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) })
            if reasons.count >= 16 { ERR_clear_error(); break }
        }
        return reasons
    }

    static func clear() { ERR_clear_error() }

    static func error(_ kind: TLSError.Kind, _ context: String, setting: TLSSetting? = nil) -> TLSError {
        TLSError(kind: kind, reasons: drain(), context: context, setting: setting)
    }
}
