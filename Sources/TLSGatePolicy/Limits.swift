/// `[limits]`: resource bounds for one policy's worker.
public struct Limits: Sendable, Hashable, Codable {
    /// `max_connections`: concurrent client connections. Default 10000, 1...1_000_000.
    public let maxConnections: Int
    /// `idle_timeout`: close a connection with no bytes either way for this long. Default 5m, 1s...24h.
    public let idleTimeout: TimeSpan

    public static let defaultMaxConnections = 10_000
    public static let maxConnectionsRange = 1...1_000_000
    public static let defaultIdleTimeout = TimeSpan.minutes(5)
    public static let idleTimeoutRange = TimeSpan.seconds(1)...TimeSpan.hours(24)

    public init(maxConnections: Int = defaultMaxConnections, idleTimeout: TimeSpan = defaultIdleTimeout) {
        self.maxConnections = maxConnections
        self.idleTimeout = idleTimeout
    }
}
