/// What the supervisor hands a worker on its control descriptor, as one JSON line: the
/// already validated policy and how to serve it. The worker never re-reads policy files.
public struct WorkerAssignment: Sendable, Equatable, Codable {
    public var policy: Policy
    public var mode: GatewayConfig.InterceptMode
    public var drainTimeout: TimeSpan
    public var threads: Int

    public init(policy: Policy, mode: GatewayConfig.InterceptMode, drainTimeout: TimeSpan, threads: Int) {
        self.policy = policy
        self.mode = mode
        self.drainTimeout = drainTimeout
        self.threads = threads
    }
}
