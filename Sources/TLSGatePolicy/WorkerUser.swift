/// `worker_user`: the account the workers run as, apart from the supervisor's, so that a
/// compromised worker cannot signal or trace the supervisor nor read what only the
/// supervisor's account can read.
public enum WorkerUser: Sendable, Equatable, Codable, CustomStringConvertible {
    /// One account for every worker (the default, `"tlsgate-worker"`): separates the
    /// workers from the supervisor, not from each other.
    case account(String)
    /// `"per-policy"`: policy NAME's worker runs as `tlsgate-w-NAME`, so one policy's
    /// worker cannot read another's client key (a key mode 0400 owned by its account).
    case perPolicy
    /// `"same"`: the workers run as the supervisor's own account (no separate account;
    /// the seccomp filter alone keeps them from signalling or tracing it). The choice for
    /// a gateway started without root and without CAP_SETUID/CAP_SETGID.
    case same

    public static let defaultAccount = "tlsgate-worker"
    public static let `default` = WorkerUser.account(defaultAccount)
    /// The prefix of the per-policy account names.
    public static let perPolicyPrefix = "tlsgate-w-"
    public static let perPolicyKeyword = "per-policy"
    public static let sameKeyword = "same"

    /// The account policy `name`'s worker runs as; nil for `.same` (the supervisor's).
    public func accountName(forPolicy name: String) -> String? {
        switch self {
        case .account(let account): return account
        case .perPolicy: return Self.perPolicyPrefix + name
        case .same: return nil
        }
    }

    /// As written in the config.
    public var description: String {
        switch self {
        case .account(let account): return account
        case .perPolicy: return Self.perPolicyKeyword
        case .same: return Self.sameKeyword
        }
    }
}
