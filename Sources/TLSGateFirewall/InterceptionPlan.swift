/// What the gateway intercepts, in terms nftables understands. Built by the supervisor
/// from the validated config and policies; turned into text by `Ruleset`.
public struct InterceptionPlan: Sendable, Equatable {
    public enum Mode: String, Sendable, Equatable {
        /// nat prerouting REDIRECT to the listen port; original destination from conntrack.
        case redirect
        /// mangle prerouting TPROXY to the listen port; the socket's local address is the
        /// original destination. Needs policy routing (see `Ruleset.tproxyRouting`).
        case tproxy
        /// nat output REDIRECT of this host's own connections, skipping the gateway's uid.
        case local
    }

    /// Where intercepted connections come from: client networks and/or LAN interfaces.
    public struct Clients: Sendable, Equatable {
        public var ipv4: [String]
        public var ipv6: [String]
        public var interfaces: [String]

        public init(ipv4: [String] = [], ipv6: [String] = [], interfaces: [String] = []) {
            self.ipv4 = ipv4
            self.ipv6 = ipv6
            self.interfaces = interfaces
        }
    }

    /// One policy's interception.
    public struct Entry: Sendable, Equatable {
        /// The policy name: `[A-Za-z0-9._-]+`, used in set names.
        public var name: String
        public var ipv4: [String]
        public var ipv6: [String]
        public var matchPort: UInt16
        public var upstreamPort: UInt16
        public var listenPort: UInt16
        public var denyDirect: Bool
        /// False for a configured policy that is not served now (disabled after a crash
        /// loop): no interception rule, only the fail-closed guard.
        public var intercepted: Bool

        public init(
            name: String, ipv4: [String], ipv6: [String], matchPort: UInt16, upstreamPort: UInt16,
            listenPort: UInt16, denyDirect: Bool, intercepted: Bool = true
        ) {
            self.intercepted = intercepted
            self.name = name
            self.ipv4 = ipv4
            self.ipv6 = ipv6
            self.matchPort = matchPort
            self.upstreamPort = upstreamPort
            self.listenPort = listenPort
            self.denyDirect = denyDirect
        }
    }

    public var mode: Mode
    public var clients: Clients
    public var entries: [Entry]
    /// The uid the gateway runs as: `local` mode never redirects its own connections.
    public var gatewayUID: UInt32
    /// The uids its workers run as (`worker_user`), whose upstream connections `local`
    /// mode never redirects or rejects either; empty when they run as `gatewayUID`.
    public var workerUIDs: [UInt32]
    /// The packet mark TPROXY sets and the policy route matches.
    public var tproxyMark: UInt32

    public init(
        mode: Mode, clients: Clients, entries: [Entry], gatewayUID: UInt32, workerUIDs: [UInt32] = [],
        tproxyMark: UInt32 = 0x746c
    ) {
        self.mode = mode
        self.clients = clients
        self.entries = entries
        self.gatewayUID = gatewayUID
        self.workerUIDs = workerUIDs
        self.tproxyMark = tproxyMark
    }

    /// The gateway's own uids, sorted, each once: what `local` mode leaves alone.
    public var exemptUIDs: [UInt32] { Array(Set([gatewayUID] + workerUIDs)).sorted() }
}
