/// What `tlsgate status` shows: the running gateway as the supervisor sees it. Sent as JSON
/// (snake_case keys) over the control socket; `tlsgate status --json` prints it as is.
public struct GatewayStatus: Codable, Sendable, Equatable {
    public struct Worker: Codable, Sendable, Equatable {
        public var pid: Int32?
        /// `starting` (not ready yet), `serving` (ready, the policy's current worker),
        /// `leaving` (replaced or stopping: draining).
        public var state: String
        public var uptimeSeconds: Double
        /// Open connections, as it last reported them.
        public var activeConnections: UInt64
    }

    public struct Policy: Codable, Sendable, Equatable {
        public var name: String
        /// The port its socket listens on (the rules redirect to it); nil when disabled.
        public var listenPort: UInt16?
        /// The port its destinations are matched on.
        public var matchPort: UInt16?
        /// `ready` (a serving worker), `starting` (none yet, one starting or a restart
        /// pending), `disabled` (crashed too often; its traffic is rejected until a reload).
        public var state: String
        /// Its workers' unexpected exits since the gateway started.
        public var restarts: Int
        public var activeConnections: UInt64
        public var workers: [Worker]
    }

    /// A `[match] hosts` name: what it resolved to last and when it is asked again.
    public struct Host: Codable, Sendable, Equatable {
        public var name: String
        /// The last good addresses (kept while the name fails).
        public var addresses: [String]
        /// The TTL of the last DNS answer; nil when it had none (/etc/hosts, the system resolver).
        public var ttlSeconds: UInt32?
        /// Seconds until it is asked again.
        public var nextRefreshSeconds: Double
        /// The last error while the name fails; nil while it resolves.
        public var error: String?
        public var consecutiveFailures: Int
        /// Failed refreshes of this name since the start.
        public var failures: UInt64
    }

    public struct Reload: Codable, Sendable, Equatable {
        /// Configs taken since start (0: the start-up one).
        public var generation: Int
        /// `none` (no reload yet), `live`, `refused` (config errors: the old one runs),
        /// `failed` (a new worker failed: the old one serves), or `pending`.
        public var lastResult: String
        /// Unix time the last reload ended (or was refused); nil without one.
        public var lastAt: Double?
        /// The `file:line` errors of a refused reload.
        public var errors: [String]
        /// The policies whose new worker failed.
        public var failed: [String]
    }

    public var pid: Int32
    public var config: String
    /// `running` or `stopping`.
    public var state: String
    public var uptimeSeconds: Double
    /// What `/healthz` says: ready, and if not, why.
    public var ready: Bool
    public var notReady: [String]
    public var rulesApplied: Bool
    public var reload: Reload
    public var policies: [Policy]
    /// Every `[match] hosts` name of the policies, sorted.
    public var hosts: [Host]
}

/// The answer to `reload` on the control socket.
public struct ReloadOutcome: Codable, Sendable, Equatable {
    /// `live`: the new config is in force (every changed policy's new worker is ready);
    /// `refused`: the config has errors, the old one still runs; `failed`: a new worker
    /// failed, the old one still serves; `stopping`: the gateway is stopping.
    public var result: String
    public var errors: [String]
    public var failed: [String]
    public var added: [String]
    public var changed: [String]
    public var removed: [String]
    public var generation: Int

    public init(
        result: String, errors: [String] = [], failed: [String] = [], added: [String] = [], changed: [String] = [],
        removed: [String] = [], generation: Int
    ) {
        self.result = result
        self.errors = errors
        self.failed = failed
        self.added = added
        self.changed = changed
        self.removed = removed
        self.generation = generation
    }
}
