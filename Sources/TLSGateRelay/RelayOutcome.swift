import TLSGatePolicy

/// Why a relayed connection ended: the `reason=` field of its log line.
///
/// A struct over a private enum, so new reasons never break callers. The raw values are
/// stable: operators grep for them and tests assert them.
public struct RelayReason: Hashable, Sendable, CustomStringConvertible {
    private enum Base: String, Sendable, CaseIterable {
        case completed
        case idleTimeout = "idle_timeout"
        case notRedirected = "not_redirected"
        case destinationIsGateway = "destination_is_gateway"
        case destinationNotInPolicy = "destination_not_in_policy"
        case maxConnections = "max_connections"
        case connectTimeout = "connect_timeout"
        case connectRefused = "connect_refused"
        case connectFailed = "connect_failed"
        case tlsVerifyFailed = "tls_verify_failed"
        case tlsHandshakeFailed = "tls_handshake_failed"
        case handshakeTimeout = "tls_handshake_timeout"
        case upstreamTruncated = "upstream_truncated"
        case upstreamError = "upstream_error"
        case clientError = "client_error"
        case clientSpeaksTLS = "client_speaks_tls"
        case badRequest = "bad_request"
        case hostNotAllowed = "host_not_allowed"
        case hostHeaderTimeout = "host_header_timeout"
        case starttlsRefused = "starttls_refused"
        case starttlsTimeout = "starttls_timeout"
        case shutdown
    }
    private let base: Base
    private init(_ base: Base) { self.base = base }

    public static let completed = RelayReason(.completed)
    public static let idleTimeout = RelayReason(.idleTimeout)
    public static let notRedirected = RelayReason(.notRedirected)
    public static let destinationIsGateway = RelayReason(.destinationIsGateway)
    public static let destinationNotInPolicy = RelayReason(.destinationNotInPolicy)
    public static let maxConnections = RelayReason(.maxConnections)
    public static let connectTimeout = RelayReason(.connectTimeout)
    public static let connectRefused = RelayReason(.connectRefused)
    public static let connectFailed = RelayReason(.connectFailed)
    public static let tlsVerifyFailed = RelayReason(.tlsVerifyFailed)
    public static let tlsHandshakeFailed = RelayReason(.tlsHandshakeFailed)
    public static let handshakeTimeout = RelayReason(.handshakeTimeout)
    public static let upstreamTruncated = RelayReason(.upstreamTruncated)
    public static let upstreamError = RelayReason(.upstreamError)
    public static let clientError = RelayReason(.clientError)
    /// The client sent a TLS ClientHello on the plain port: it already speaks TLS.
    public static let clientSpeaksTLS = RelayReason(.clientSpeaksTLS)
    /// http-host: the request head was malformed, had no or several Host headers, or was too large (400).
    public static let badRequest = RelayReason(.badRequest)
    /// http-host: the Host is not in the policy's allowed_names (403).
    public static let hostNotAllowed = RelayReason(.hostNotAllowed)
    /// http-host: no whole request head within host_header_timeout (408).
    public static let hostHeaderTimeout = RelayReason(.hostHeaderTimeout)
    /// starttls: the server did not offer or refused the protocol's upgrade, or its
    /// plain-text answer was malformed, oversized or came unasked.
    public static let starttlsRefused = RelayReason(.starttlsRefused)
    /// starttls: the plain-text upgrade exchange did not finish within connect_timeout.
    public static let starttlsTimeout = RelayReason(.starttlsTimeout)
    public static let shutdown = RelayReason(.shutdown)

    public var description: String { base.rawValue }

    /// Every reason (the metrics' `reason` label values; `WorkerStats.reasons` mirrors them).
    public static var all: [RelayReason] { Base.allCases.map(RelayReason.init) }

    /// `ok` for a normal end, `refused` when the gateway never connected upstream,
    /// `failed` when it tried and could not finish.
    public var result: RelayResult {
        switch base {
        case .completed, .idleTimeout, .shutdown: return .ok
        case .notRedirected, .destinationIsGateway, .destinationNotInPolicy, .maxConnections, .clientSpeaksTLS,
            .badRequest, .hostNotAllowed, .hostHeaderTimeout:
            return .refused
        default: return .failed
        }
    }
}

extension RelayReason {
    /// Whether the upstream side failed (connect or TLS): what `on_failure` applies to.
    var isUpstreamFailure: Bool {
        [
            .connectTimeout, .connectRefused, .connectFailed, .tlsVerifyFailed, .tlsHandshakeFailed, .handshakeTimeout,
            .starttlsRefused, .starttlsTimeout,
        ]
            .contains(self)
    }
}
