/// When each `[match] hosts` name is resolved again, and what its last answer was: a
/// value type on a mock clock (milliseconds), so the supervisor only performs what it says.
///
/// - A name resolved with a TTL is asked again when the TTL expires, bounded below by
///   `minimum` (`[dns] min_refresh`) and above by `maximum` (`max_refresh`); one without a
///   TTL (/etc/hosts, the system resolver) after `maximum`.
/// - A name that fails keeps its last good addresses and is retried after `minimum`,
///   doubled per further failure up to `maximum`. Each failure is counted; a failure is
///   *news* (to be logged) only when the name was fine before or its kept addresses
///   changed, so a name that stays down logs once, not at every retry.
public struct HostRefreshSchedule: Sendable {
    public typealias Time = UInt64

    /// One name's state, as `status` reports it.
    public struct Entry: Sendable, Equatable {
        /// The last good addresses (kept while the name fails), as text, sorted.
        public var addresses: [String]
        /// When the name is asked next.
        public var due: Time
        /// The last error, while the name fails; nil once it resolves again.
        public var error: String?
        /// Failures in a row (0 while it resolves).
        public var consecutiveFailures: Int
        /// Every failed refresh of this name since the start.
        public var failures: UInt64
        /// The TTL of the last DNS answer, in seconds; nil when it had none.
        public var ttl: UInt32?
    }

    public var minimum: Time
    public var maximum: Time
    public private(set) var entries: [String: Entry] = [:]
    /// Every failed refresh of any name since the start (`dns_refresh_failures`).
    public private(set) var failures: UInt64 = 0

    public init(minimum: Time, maximum: Time) {
        self.minimum = minimum
        self.maximum = max(minimum, maximum)
    }

    /// How long after an answer with `ttl` (seconds; nil: unknown) the name is asked again.
    public func interval(ttl: UInt32?) -> Time {
        guard let ttl else { return maximum }
        return min(max(Time(ttl) * 1000, minimum), maximum)
    }

    /// The name resolved to `addresses` (not empty). Returns whether they differ from the
    /// last ones, and whether the name was failing until now (recovered).
    @discardableResult
    public mutating func resolved(_ name: String, addresses: [String], ttl: UInt32?, now: Time) -> (changed: Bool, recovered: Bool) {
        let sorted = addresses.sorted()
        let old = entries[name]
        entries[name] = Entry(
            addresses: sorted, due: now + interval(ttl: ttl), error: nil, consecutiveFailures: 0,
            failures: old?.failures ?? 0, ttl: ttl)
        return (old?.addresses != sorted, old?.error != nil)
    }

    /// The name could not be resolved. Returns whether this is news worth a log line: the
    /// first failure after a success, or ever (the kept addresses cannot change while the
    /// name fails, so that is once per change).
    @discardableResult
    public mutating func failed(_ name: String, error: String, now: Time) -> Bool {
        failures += 1
        var entry = entries[name] ?? Entry(addresses: [], due: now, error: nil, consecutiveFailures: 0, failures: 0, ttl: nil)
        let news = entry.error == nil
        entry.error = error
        entry.failures += 1
        entry.consecutiveFailures += 1
        var delay = minimum
        for _ in 1..<min(entry.consecutiveFailures, 32) { delay = min(delay * 2, maximum) }
        entry.due = now + min(delay, maximum)
        entries[name] = entry
        return news
    }

    /// The last good addresses of `name` (empty when it never resolved).
    public func addresses(of name: String) -> [String] { entries[name]?.addresses ?? [] }

    /// Forgets the names no policy uses any more.
    public mutating func keep(only names: Set<String>) {
        entries = entries.filter { names.contains($0.key) }
    }

    /// The names whose time has come, sorted.
    public func due(now: Time) -> [String] {
        entries.filter { $0.value.due <= now }.map(\.key).sorted()
    }

    /// When the next name is due.
    public var nextDeadline: Time? { entries.values.map(\.due).min() }
}
