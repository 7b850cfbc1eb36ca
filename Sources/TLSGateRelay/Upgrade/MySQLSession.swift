import NIOCore

/// Ties the two channels of one `starttls = "mysql"` connection together (both live on the
/// connection's event loop): the upstream `StartTLSUpgradeHandler` greets the client through
/// it, the client's handshake response comes back through it, and during authentication the
/// server's packets tell the client side which sequence number the client expects (for a
/// refusal's ERR packet) and when authentication ends.
final class MySQLSession {
    /// The client's direction, as a value.
    private(set) var client = MySQLClientSide()
    /// Set by the client's handler when it is added.
    var clientHandler: MySQLClientHandler?
    /// Set when the upstream pipeline is made.
    var upgradeHandler: StartTLSUpgradeHandler?
    /// The client's COM_QUIT, after authentication (not with compression).
    var quitWatch = MySQLQuitWatch()
    private(set) var watchesQuit = false
    /// The client said COM_QUIT last: the server's close without close_notify that follows
    /// (MySQL's and MariaDB's way) ends the session normally.
    var clientQuit: Bool { watchesQuit && quitWatch.quitSent }
    /// Refuse the connection: the reason, the detail; the client gets an ERR packet.
    private let onRefuse: (RelayReason, String) -> Void

    init(onRefuse: @escaping (RelayReason, String) -> Void) {
        self.onRefuse = onRefuse
    }

    /// The sequence number of an ERR packet the client would accept now.
    var refusalSequence: UInt8 { client.clientExpects }

    /// The end of a greeting that names caching_sha2_password (the name and its NUL).
    private static let cachingSHA2Name = [0] + Array(MySQLServerAuth.cachingSHA2.utf8) + [0]

    /// The upgrade made the client's greeting: write it and read the client's answer.
    func greet(_ greeting: [UInt8]) {
        // The scramble the client masks a caching_sha2_password with: the greeting's own.
        client.greeted(scramble: MySQLUpgrade.scramble(ofBuilt: greeting) ?? [])
        // MySQL 8's default plugin: its full authentication needs the worker's key.
        if greeting.suffix(Self.cachingSHA2Name.count).elementsEqual(Self.cachingSHA2Name) { MySQLGatewayKey.prepare() }
        clientHandler?.write(greeting)
    }

    /// Bytes from the client, through the client side's state; what it says to do.
    func clientSent(_ bytes: [UInt8]) -> MySQLClientSide.Action {
        let action = client.receive(bytes)
        switch action {
        case .answered(let response, _):
            // CLIENT_COMPRESS (bit 5) changes the framing after authentication.
            watchesQuit = MySQLPacket.uint32(response[...], at: 0) & (1 << 5) == 0
            upgradeHandler?.clientAnswered(response)
        case .refuse(let refusal):
            let reason: RelayReason =
                refusal.asksForTLS ? .clientSpeaksTLS : refusal.gatewayKey ? .starttlsRefused : .clientError
            onRefuse(reason, refusal.detail)
        case .needMore, .pass, .reply:
            break
        }
        return action
    }

    /// Overwrites the clear password the last action carried (after it was forwarded).
    func wipeSecret() {
        client.wipeSecret()
    }

    /// How far the server's sequence numbers are ahead of the client's.
    var lead: UInt8 { client.lead }

    /// The server's authentication packets went to the client with these sequence numbers;
    /// what they asked for so far (`MySQLServerAuth`).
    func serverSent(sequences: [UInt8], ended: Bool, fullAuthentication: Bool = false, switchScramble: [UInt8]? = nil) {
        if switchScramble != nil { MySQLGatewayKey.prepare() }
        client.serverAsked(fullAuthentication: fullAuthentication, switchScramble: switchScramble)
        for sequence in sequences { client.serverSent(sequence: sequence) }
        guard ended else { return }
        if case .refuse(let refusal) = client.authenticationEnded() {
            onRefuse(.clientError, refusal.detail)
        }
    }

    /// The server misbehaved during authentication.
    func serverRefused(_ why: String) {
        onRefuse(.starttlsRefused, why)
    }
}
