import TLSGatePolicy
import TLSGateSystem

/// The account check `tlsgate run`, `check` and `rules` pass to `GatewayConfigLoader`, so
/// a `user` with no account is one error with the same `file:line: message` everywhere.
enum AccountLookup {
    static let problem: GatewayConfigLoader.AccountCheck = { user in
        do {
            _ = try Privileges.lookup(user: user)
            return nil
        } catch {
            return "\(error)"
        }
    }
}
