import TLSGatePolicy

/// `starttls = "postgres-direct"`: no plain-text exchange with the server; the TLS handshake
/// starts at once (PostgreSQL 17's direct TLS, ALPN `postgresql` required by the TLS
/// configuration). Only the LAN side speaks PostgreSQL's preamble (`PostgresClientPreamble`).
public struct DirectTLSStart: UpgradeStateMachine {
    private let proto: StartTLSProtocol
    private var started = false
    public private(set) var transcript: [String] = []

    public init(_ proto: StartTLSProtocol) { self.proto = proto }

    public mutating func start() -> UpgradeAction {
        guard !started else { return .refuse("already started") }
        started = true
        transcript.append("C: TLS handshake at once (no SSLRequest), ALPN \(proto.requiredALPN ?? "-") required")
        return .startTLS
    }

    public mutating func receive(_ bytes: [UInt8]) -> UpgradeAction {
        .refuse("the server sent \(bytes.count) bytes before the TLS handshake")
    }
}
