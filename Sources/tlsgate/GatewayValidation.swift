import FoundationEssentials
import TLSGatePolicy
import TLSGateRelay
import TLSGateSystem

#if canImport(Glibc)
import Glibc
#endif

/// What `check --config`, `run` and every reload validate, in one place: the config and
/// its policies (`GatewayConfigLoader.loadAll`, with each policy's TLS context built by
/// OpenSSL as a dry run), then the accounts the workers run as (`worker_user`) and the
/// files each worker will open, tried as its account.
enum GatewayValidation {
    static func loadAll(_ path: String) -> (config: GatewayConfig?, policies: [Policy], diagnostics: [Diagnostic]) {
        let (config, policies, diagnostics) = GatewayConfigLoader.loadAll(
            path, tlsCheck: PolicyTLSCheck.check, accountProblem: AccountLookup.problem, fileScope: fileScope)
        guard let config, let gateway = gatewayAccount(config) else { return (config, policies, diagnostics) }
        let (accounts, accountErrors) = workerAccounts(config, policies: policies, gateway: gateway)
        var access: [Diagnostic] = []
        for policy in policies {
            guard let account = accounts[policy.name] else { continue }
            access += PolicyFileAccess.diagnostics(for: [policy], account: account.name) { file in
                Privileges.readProblem(file, as: account)
            }
        }
        if config.workerUser == .perPolicy {
            let checked = policies.filter { accounts[$0.name] != nil }
            access += PolicyFileAccess.clientKeysShared(by: checked, account: { accounts[$0.name]!.name }) { file, other in
                Privileges.readProblem(file, as: accounts[other.name]!) == nil
            }
        }
        // A policy with an unreadable file would only crash-loop: it is not started.
        let refused = Set(access.map(\.file))
        return (config, policies.filter { !refused.contains($0.sourcePath) }, diagnostics + accountErrors + access)
    }

    /// Each policy's named files (its client key above all: mode 0600, owned by the
    /// worker's account) are decoded and dry-run as the account of the worker that will
    /// read them, as root or with CAP_SETUID/CAP_SETGID; otherwise as this process.
    static func fileScope(_ config: GatewayConfig) -> PolicyLoader.FileScope? {
        guard config.workerUser != .same, Privileges.isRoot || Privileges.canRunWorkersAsAnotherAccount else { return nil }
        return { policy, body in
            guard let name = config.workerUser.accountName(forPolicy: policy), let account = try? Privileges.lookup(user: name),
                account.uid != 0
            else { return body(nil) }
            Privileges.withFileIdentity(of: account) { switched in body(switched ? account.name : nil) }
        }
    }

    /// The account the gateway (the supervisor) runs as: the config's `user` when started
    /// as root, else whoever this process is. Nil when it cannot be known (an unknown
    /// account is reported elsewhere).
    static func gatewayAccount(_ config: GatewayConfig) -> Privileges.Account? {
        if Privileges.isRoot {
            guard let user = config.user else { return Privileges.Account(name: "root", uid: 0, gid: 0) }
            return try? Privileges.lookup(user: user)
        }
        guard let entry = getpwuid(geteuid()) else { return nil }
        return Privileges.Account(name: String(cString: entry.pointee.pw_name), uid: entry.pointee.pw_uid, gid: entry.pointee.pw_gid)
    }

    /// Each policy's worker account, by policy name, and the errors that stop workers from
    /// running under `worker_user` (on its line): no privilege to switch accounts, an
    /// account with the gateway's own uid, or root. A missing account was reported by the
    /// loader; its policies get no entry (nothing is checked as a guessed account).
    static func workerAccounts(
        _ config: GatewayConfig, policies: [Policy], gateway: Privileges.Account
    ) -> (accounts: [String: Privileges.Account], errors: [Diagnostic]) {
        if config.workerUser == .same {
            return (Dictionary(uniqueKeysWithValues: policies.map { ($0.name, gateway) }), [])
        }
        let line = GatewayConfigLoader.workerUserLine(config.sourcePath)
        let key = "worker_user \"\(config.workerUser)\"\(line == nil ? " (the default)" : "")"
        guard Privileges.isRoot || Privileges.canRunWorkersAsAnotherAccount else {
            let error = Diagnostic.error(
                config.sourcePath, line,
                "\(key): this process (uid \(geteuid())) has neither root nor CAP_SETUID, CAP_SETGID and CAP_KILL, so the workers cannot run as another account: start the gateway as root with user = set, or from the systemd unit (AmbientCapabilities=CAP_NET_ADMIN CAP_SETUID CAP_SETGID CAP_KILL); or write worker_user = \"\(WorkerUser.sameKeyword)\" to run them as the gateway's own account (not separated from the supervisor then)"
            )
            return ([:], [error])
        }
        var accounts: [String: Privileges.Account] = [:]
        var errors: [Diagnostic] = []
        var reported = Set<String>()
        var byUID: [UInt32: String] = [:]
        for policy in policies {
            guard let name = config.workerUser.accountName(forPolicy: policy.name),
                let account = try? Privileges.lookup(user: name)
            else { continue }
            let problem: String?
            let twin = byUID[account.uid].flatMap { $0 == name ? nil : $0 }
            byUID[account.uid] = byUID[account.uid] ?? name
            if let twin {
                problem = "the accounts \"\(twin)\" and \"\(name)\" have the same uid \(account.uid): each policy needs an account of its own, or its worker reads the other's files"
            } else if account.uid == 0 {
                problem = "the account \"\(name)\" has uid 0: workers never run as root; give it a uid of its own"
            } else if account.uid == gateway.uid {
                problem = "the account \"\(name)\" has the uid \(account.uid) of the gateway's own account \"\(gateway.name)\": a worker could then signal the supervisor and read what it reads; give it a uid of its own, or write worker_user = \"\(WorkerUser.sameKeyword)\" to choose that knowingly"
            } else {
                problem = nil
            }
            if let problem {
                if reported.insert(name).inserted { errors.append(.error(config.sourcePath, line, "\(key): \(problem)")) }
                continue
            }
            accounts[policy.name] = account
        }
        return (accounts, errors)
    }
}
