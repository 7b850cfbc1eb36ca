import FoundationEssentials

#if canImport(Glibc)
import Glibc
#endif
import TLSGatePolicy
import TLSGateRelay
import TLSGateSystem

#if canImport(Glibc)
import Glibc
#endif

/// What `check --config`, `run` and every reload validate, in one place: the config and
/// its policies (`GatewayConfigLoader.loadAll`, with each policy's TLS context built by
/// OpenSSL as a dry run), then the files each worker will open, tried as the account the
/// workers run as.
enum GatewayValidation {
    static func loadAll(_ path: String) -> (config: GatewayConfig?, policies: [Policy], diagnostics: [Diagnostic]) {
        let (config, policies, diagnostics) = GatewayConfigLoader.loadAll(
            path, tlsCheck: PolicyTLSCheck.check, accountProblem: AccountLookup.problem)
        guard let config, let account = workerAccount(config) else { return (config, policies, diagnostics) }
        let access = PolicyFileAccess.diagnostics(for: policies, account: account.name) { file in
            Privileges.readProblem(file, as: account)
        }
        // A policy with an unreadable file would only crash-loop: it is not started.
        let refused = Set(access.map(\.file))
        return (config, policies.filter { !refused.contains($0.sourcePath) }, diagnostics + access)
    }

    /// The account workers run as: the config's `user` when started as root, else whoever
    /// this process is. Nil when it cannot be known (an unknown account is reported elsewhere).
    static func workerAccount(_ config: GatewayConfig) -> Privileges.Account? {
        if Privileges.isRoot {
            guard let user = config.user, user != "root" else { return nil }
            return try? Privileges.lookup(user: user)
        }
        guard let entry = getpwuid(geteuid()) else { return nil }
        return Privileges.Account(name: String(cString: entry.pointee.pw_name), uid: entry.pointee.pw_uid, gid: entry.pointee.pw_gid)
    }
}
