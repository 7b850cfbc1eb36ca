/// The counters a worker reports to the supervisor on its control channel (`stats` lines
/// of `WorkerReport`), which the supervisor turns into the gateway's metrics.
///
/// The key set is fixed and small, so a broken or compromised worker cannot make the
/// supervisor grow label sets or memory: every key is one of `keys`, every value a decimal
/// `UInt64`. Every key but `active` is a counter: the worker sends its running totals since
/// it started, and the supervisor adds the difference from what it last saw of that worker
/// (a restarted worker starts again from 0; a total that goes down breaks the protocol).
///
///     accepted                  connections accepted
///     active                    connections open now (a level, not a counter)
///     closed.REASON             connections ended, by the log's `reason` word
///     handshakes.full           TLS handshakes to servers, full
///     handshakes.resumed        TLS handshakes to servers that resumed a session
///     bytes.up / bytes.down     bytes relayed client → server / server → client
///     H.I.count / H.I.ns        histogram H (connect, handshake, duration): observations in
///                               bucket I (0 ... bucketBounds.count; the last is +Inf) and
///                               their sum in nanoseconds
public enum WorkerStats {
    /// Why a `stats` line is refused.
    struct Invalid: Error {
        let reason: String
        init(_ reason: String) { self.reason = reason }
    }

    /// Every `reason` word of a connection's log line with its `result` (ok, refused,
    /// failed): mirrors `RelayReason` (a test checks they agree).
    public static let reasons: [String: RelayResult] = [
        "completed": .ok, "idle_timeout": .ok, "shutdown": .ok,
        "not_redirected": .refused, "destination_is_gateway": .refused, "destination_not_in_policy": .refused,
        "max_connections": .refused, "client_speaks_tls": .refused, "bad_request": .refused,
        "host_not_allowed": .refused, "host_header_timeout": .refused,
        "connect_timeout": .failed, "connect_refused": .failed, "connect_failed": .failed,
        "tls_verify_failed": .failed, "tls_handshake_failed": .failed, "tls_handshake_timeout": .failed,
        "upstream_truncated": .failed, "upstream_error": .failed, "client_error": .failed,
        "starttls_refused": .failed, "starttls_timeout": .failed,
    ]

    /// The histograms: the upstream connect, the TLS handshake (and starttls exchange),
    /// the whole connection.
    public static let histograms = ["connect", "handshake", "duration"]

    /// Bucket upper bounds in nanoseconds (inclusive, as Prometheus' `le`); one more
    /// bucket, +Inf, follows.
    public static let bucketBounds: [UInt64] = [
        5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 60000,
    ].map { UInt64($0) * 1_000_000 }

    /// The bucket a duration falls in (`bucketBounds.count` for +Inf).
    public static func bucket(nanoseconds: UInt64) -> Int {
        bucketBounds.firstIndex { nanoseconds <= $0 } ?? bucketBounds.count
    }

    /// The one key that is a level, not a running total.
    public static let gaugeKey = "active"

    /// Every key a worker may send.
    public static let keys: Set<String> = {
        var keys: Set<String> = ["accepted", gaugeKey, "handshakes.full", "handshakes.resumed", "bytes.up", "bytes.down"]
        for reason in reasons.keys { keys.insert("closed.\(reason)") }
        for histogram in histograms {
            for index in 0...bucketBounds.count {
                keys.insert("\(histogram).\(index).count")
                keys.insert("\(histogram).\(index).ns")
            }
        }
        return keys
    }()

    /// The most pairs one line carries.
    public static let maximumPairs = 32

    /// `values` as `stats` reports, each line within `WorkerReport.maximumLength` and
    /// `maximumPairs`, keys sorted; a histogram bucket's `count` and `ns` stay on one line
    /// (the supervisor needs both to place the observations).
    public static func reports(_ values: [String: UInt64]) -> [WorkerReport] {
        var units: [String: [String: UInt64]] = [:]
        for (key, value) in values {
            let unit = key.hasSuffix(".count") ? String(key.dropLast(6)) : key.hasSuffix(".ns") ? String(key.dropLast(3)) : key
            units[unit, default: [:]][key] = value
        }
        var reports: [WorkerReport] = []
        var current: [String: UInt64] = [:]
        var length = "stats\n".utf8.count
        for unit in units.keys.sorted() {
            let pairs = units[unit]!
            let unitLength = pairs.reduce(0) { $0 + 1 + $1.key.utf8.count + 1 + String($1.value).utf8.count }
            if length + unitLength > WorkerReport.maximumLength || current.count + pairs.count > maximumPairs {
                reports.append(.stats(current))
                current = [:]
                length = "stats\n".utf8.count
            }
            current.merge(pairs) { $1 }
            length += unitLength
        }
        if !current.isEmpty { reports.append(.stats(current)) }
        return reports
    }

    /// The pairs of a `stats` line's body (what follows `stats `); an error saying what is
    /// wrong for anything but known keys, each once, with decimal `UInt64` values.
    static func parse(_ body: Substring) -> Result<[String: UInt64], Invalid> {
        var values: [String: UInt64] = [:]
        let pairs = body.split(separator: " ", omittingEmptySubsequences: false)
        guard !pairs.isEmpty, pairs.count <= maximumPairs else {
            return .failure(Invalid("a stats line with \(pairs.count) pairs (1 to \(maximumPairs))"))
        }
        for pair in pairs {
            guard let equals = pair.firstIndex(of: "=") else { return .failure(Invalid("a stats pair without \"=\"")) }
            let key = String(pair[..<equals])
            let text = pair[pair.index(after: equals)...]
            guard keys.contains(key) else { return .failure(Invalid("an unknown stats key")) }
            guard !text.isEmpty, text.count <= 20, text.utf8.allSatisfy({ (0x30...0x39).contains($0) }),
                let value = UInt64(text)
            else { return .failure(Invalid("a stats value that is not a decimal count")) }
            guard values.updateValue(value, forKey: key) == nil else { return .failure(Invalid("a stats key given twice")) }
        }
        return .success(values)
    }
}
