import TLSGatePolicy

/// A policy's protocol upgrade: its state machine, the greeting the gateway makes for the
/// client once the server is verified, and the refusal in the protocol's own words.
public struct StartTLSUpgrade: Sendable {
    public let proto: StartTLSProtocol
    public private(set) var machine: any UpgradeStateMachine

    /// - Parameter ehloName: SMTP only: the gateway's name in `EHLO`.
    public init(_ proto: StartTLSProtocol, ehloName: String) {
        self.proto = proto
        switch proto {
        case .smtp: machine = SMTPUpgrade(ehloName: ehloName)
        case .imap: machine = IMAPUpgrade()
        case .pop3: machine = POP3Upgrade()
        case .ldap: machine = LDAPUpgrade()
        case .postgres: machine = PostgresUpgrade()
        case .postgresDirect: machine = DirectTLSStart(proto)
        case .mysql: machine = MySQLUpgrade()
        }
    }

    public mutating func start() -> UpgradeAction { machine.start() }
    public mutating func receive(_ bytes: [UInt8]) -> UpgradeAction { machine.receive(bytes) }
    public mutating func clientAnswered(_ bytes: [UInt8]) -> UpgradeAction { machine.clientAnswered(bytes) }
    public var transcript: [String] { machine.transcript }

    /// What the client gets once the server is verified, in place of the server's own
    /// (unauthenticated) greeting; nil for protocols where the client speaks first.
    public static func clientGreeting(_ proto: StartTLSProtocol, server: String) -> [UInt8]? {
        let name = UpgradeText.printable(server, max: 255)
        switch proto {
        case .smtp: return Array("220 \(name) ESMTP ready (tlsgate: TLS to the server verified)\r\n".utf8)
        case .imap: return Array("* OK IMAP server \(name) ready (tlsgate: TLS to the server verified)\r\n".utf8)
        case .pop3: return Array("+OK POP3 server \(name) ready (tlsgate: TLS to the server verified)\r\n".utf8)
        case .ldap, .postgres, .postgresDirect: return nil  // the client speaks first; its held request follows inside TLS
        case .mysql: return nil  // its greeting came before TLS (MySQLUpgrade), rebuilt by the gateway
        }
    }

    /// The refusal a waiting client reads before the close: names the policy and the
    /// reason; one line, printable, bounded. `sequence`: MySQL only, the number the client
    /// expects on its next packet (`MySQLClientSide.clientExpects`).
    public static func clientRefusal(
        _ proto: StartTLSProtocol, policy: String, reason: String, detail: String, sequence: UInt8 = 0
    ) -> [UInt8] {
        let text = UpgradeText.printable("tlsgate: policy \(policy): \(reason): \(detail)", max: 400)
        switch proto {
        case .smtp: return Array("421 4.7.0 \(text)\r\n".utf8)
        case .imap: return Array("* BYE \(text)\r\n".utf8)
        case .pop3: return Array("-ERR \(text)\r\n".utf8)
        case .ldap: return LDAPUpgrade.noticeOfDisconnection(text)
        case .postgres, .postgresDirect: return PostgresUpgrade.errorResponse(text)
        case .mysql: return MySQLPacket.err(sequence: sequence, text)
        }
    }
}
