/// The `result=` field of a connection's log line, and which of the gateway's connection
/// counters it goes to: `ok` for a normal end, `refused` when the gateway never connected
/// upstream, `failed` when it tried and could not finish.
public enum RelayResult: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    case ok
    case refused
    case failed

    public var description: String { rawValue }
}
