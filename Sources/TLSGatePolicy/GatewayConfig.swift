/// The global configuration (`/etc/tlsgate/tlsgate.toml`): where the policies are, who
/// the gateway runs as, what it intercepts. Parsed and validated once by
/// `GatewayConfigLoader`; immutable afterwards.
public struct GatewayConfig: Sendable, Equatable, Codable {
    public enum InterceptMode: String, Sendable, Equatable, Codable, CaseIterable {
        /// nat REDIRECT of forwarded LAN traffic (the default).
        case redirect
        /// TPROXY of forwarded LAN traffic: no NAT, the socket sees the real destination.
        case tproxy
        /// This host's own outgoing connections (nat output), skipping the gateway's uid.
        case local
    }

    public enum LogFormat: String, Sendable, Equatable, Codable, CaseIterable {
        case text
        case json
    }

    public struct Intercept: Sendable, Equatable, Codable {
        public var mode: InterceptMode
        /// Client networks whose connections are intercepted.
        public var from: [IPNetwork]
        /// LAN interfaces whose connections are intercepted (instead of, or with, `from`).
        public var interfaces: [String]
        /// Where the per-policy sockets are bound ("::" takes IPv4 and IPv6).
        public var listen: IPAddress
        /// TPROXY: the packet mark and the routing table that delivers marked packets locally.
        public var tproxyMark: UInt32
        public var tproxyTable: Int

        public init(
            mode: InterceptMode = .redirect, from: [IPNetwork] = [], interfaces: [String] = [],
            listen: IPAddress = IPAddress("::")!, tproxyMark: UInt32 = 0x746c, tproxyTable: Int = 7468
        ) {
            self.mode = mode
            self.from = from
            self.interfaces = interfaces
            self.listen = listen
            self.tproxyMark = tproxyMark
            self.tproxyTable = tproxyTable
        }
    }

    public struct Log: Sendable, Equatable, Codable {
        public var format: LogFormat
        public var level: String

        public init(format: LogFormat = .text, level: String = "info") {
            self.format = format
            self.level = level
        }
    }

    public struct Workers: Sendable, Equatable, Codable {
        /// How long a stopping or replaced worker lets its connections finish.
        public var drainTimeout: TimeSpan
        /// Restart back-off: first delay, doubled per crash, capped.
        public var restartDelay: TimeSpan
        public var restartDelayMax: TimeSpan
        /// More crashes than this within `crashWindow` stop restarting the policy.
        public var crashLimit: Int
        public var crashWindow: TimeSpan
        /// Event loop threads per worker (0: one per core).
        public var threads: Int

        public init(
            drainTimeout: TimeSpan = .seconds(30), restartDelay: TimeSpan = TimeSpan(milliseconds: 0),
            restartDelayMax: TimeSpan = .seconds(5), crashLimit: Int = 5, crashWindow: TimeSpan = .seconds(60),
            threads: Int = 0
        ) {
            self.drainTimeout = drainTimeout
            self.restartDelay = restartDelay
            self.restartDelayMax = restartDelayMax
            self.crashLimit = crashLimit
            self.crashWindow = crashWindow
            self.threads = threads
        }
    }

    /// The file this came from, as given.
    public var sourcePath: String
    /// The policies folder, resolved against the config file's folder.
    public var policies: String
    /// The account to run as when started as root; nil to stay who we are.
    public var user: String?
    public var intercept: Intercept
    public var log: Log
    public var workers: Workers

    public init(
        sourcePath: String, policies: String, user: String? = nil, intercept: Intercept = Intercept(),
        log: Log = Log(), workers: Workers = Workers()
    ) {
        self.sourcePath = sourcePath
        self.policies = policies
        self.user = user
        self.intercept = intercept
        self.log = log
        self.workers = workers
    }
}
