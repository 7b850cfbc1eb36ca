/// Reads and validates the global config file (see `GatewayConfig` for its keys) and,
/// for `tlsgate run` and `tlsgate check --config`, the policies folder it names.
///
/// Like `PolicyLoader`, every problem is collected (`file:line: message`, the file as
/// given), so one run reports all of them.
public enum GatewayConfigLoader {
    /// Largest config file read.
    public static let maximumFileSize = 1 << 20

    /// Reads and validates the global config file alone.
    ///
    /// `config` is nil when there is any error; warnings may come with a config. The
    /// policies folder must exist, but its files are not read (see `loadAll`).
    public static func load(
        _ path: String, accountProblem: AccountCheck? = nil
    ) -> (config: GatewayConfig?, diagnostics: [Diagnostic]) {
        let loaded = loadDetailed(path, accountProblem: accountProblem)
        return (loaded.config, loaded.diagnostics)
    }

    /// The config plus every policy in its policies folder: what `tlsgate run` needs.
    /// config is nil when the config itself has errors; policies are those without errors.
    ///
    /// The diagnostics are the config file's (including the warnings about policies
    /// whose networks are in a family `[intercept] from` does not cover), then those of
    /// `PolicyLoader.loadDirectory(config.policies)`. Policies are only read when the
    /// config has no error.
    ///
    /// `tlsCheck` is passed to `PolicyLoader.loadDirectory` (see `TLSSettingsCheck`).
    /// `accountProblem` (see `AccountCheck`) checks that the `user` account exists: this
    /// module reads no account database, so `tlsgate run` and `tlsgate check` pass the same
    /// lookup and report a missing account with the same `file:line: message`.
    ///
    /// `fileScope`, given the valid config, says how each policy's named files are read
    /// (see `PolicyLoader.FileScope`: as the account its worker runs as, `worker_user`).
    public static func loadAll(
        _ path: String, tlsCheck: TLSSettingsCheck? = nil, accountProblem: AccountCheck? = nil,
        fileScope: ((GatewayConfig) -> PolicyLoader.FileScope?)? = nil
    ) -> (config: GatewayConfig?, policies: [Policy], diagnostics: [Diagnostic]) {
        let loaded = loadDetailed(path, accountProblem: accountProblem)
        guard let config = loaded.config else { return (nil, [], loaded.diagnostics) }
        let result = PolicyLoader.loadDirectory(config.policies, tlsCheck: tlsCheck, fileScope: fileScope?(config))
        let coverage = familyWarnings(config, policies: result.policies, fromLine: loaded.lines.from)
        let accounts = perPolicyAccountErrors(
            config, policies: result.policies, line: loaded.lines.workerUser, accountProblem: accountProblem)
        return (config, result.policies, loaded.diagnostics + coverage + result.diagnostics + accounts)
    }

    /// With `worker_user = "per-policy"`, one error on the `worker_user` line per policy
    /// whose account (`tlsgate-w-NAME`) is not a valid user name or does not exist.
    static func perPolicyAccountErrors(
        _ config: GatewayConfig, policies: [Policy], line: Int?, accountProblem: AccountCheck?
    ) -> [Diagnostic] {
        guard config.workerUser == .perPolicy else { return [] }
        var errors: [Diagnostic] = []
        for policy in policies {
            guard let account = config.workerUser.accountName(forPolicy: policy.name) else { continue }
            let start = "worker_user = \"\(WorkerUser.perPolicyKeyword)\": policy \(policy.name) runs as \"\(account)\""
            if !GatewayConfigDecoder.isValidUserName(account) {
                errors.append(
                    .error(
                        config.sourcePath, line,
                        "\(start), which is not a valid user name (lowercase letters, digits, \"_\" and \"-\", at most 32 characters): rename \(policy.sourcePath) or use one shared worker_user"))
            } else if let accountProblem, let problem = accountProblem(account) {
                errors.append(.error(config.sourcePath, line, "\(start): \(problem)"))
            }
        }
        return errors
    }

    /// Warnings for policies with networks of an IP family that no `[intercept] from`
    /// network covers, when `from` alone (no `interfaces`) names the clients and lists only
    /// one family: such traffic is never redirected to the gateway.
    static func familyWarnings(_ config: GatewayConfig, policies: [Policy], fromLine: Int?) -> [Diagnostic] {
        let intercept = config.intercept
        guard intercept.mode != .local, intercept.interfaces.isEmpty, !intercept.from.isEmpty else { return [] }
        let fromHasIPv4 = intercept.from.contains(where: \.isIPv4)
        let fromHasIPv6 = intercept.from.contains { !$0.isIPv4 }
        var warnings: [Diagnostic] = []
        for policy in policies {
            for (family, covered, isFamily) in [
                ("IPv4", fromHasIPv4, { (network: IPNetwork) in network.isIPv4 }),
                ("IPv6", fromHasIPv6, { (network: IPNetwork) in !network.isIPv4 }),
            ] where !covered && policy.match.networks.contains(where: isFamily) {
                warnings.append(
                    .warning(
                        config.sourcePath, fromLine,
                        "policy \(policy.name) has \(family) networks but [intercept] from lists no \(family) client network: its \(family) traffic will not be intercepted"
                    ))
            }
        }
        return warnings
    }

    /// The line of `worker_user` in the config file at `path`, or nil when it is not set (or
    /// the file cannot be read): for the errors about it that `run` and `check` add after
    /// loading (the privileges to use it, the accounts it names).
    public static func workerUserLine(_ path: String) -> Int? {
        guard let text = try? TextFile.readText(path, limit: maximumFileSize) else { return nil }
        return TOMLReader.read(text).table["worker_user"]?.line
    }

    /// Given the `user` (or `worker_user`) name, why that account cannot be used (e.g. `no account named
    /// "x": create it …`), or nil when it can. The loader reports the reason as an error on
    /// the `user` line: `tlsgate.toml:2: user "x": no account named "x": …`.
    public typealias AccountCheck = @Sendable (String) -> String?

    // MARK: - Internals

    struct LoadedConfig {
        let config: GatewayConfig?
        let diagnostics: [Diagnostic]
        let lines: GatewayConfigDecoder.Lines
    }

    static func loadDetailed(_ path: String, accountProblem: AccountCheck? = nil) -> LoadedConfig {
        let text: String
        do {
            text = try TextFile.readText(path, limit: maximumFileSize)
        } catch {
            return LoadedConfig(config: nil, diagnostics: [.error(path, nil, "cannot read: \(error.reason)")], lines: .init())
        }
        let document = TOMLReader.read(text)
        guard document.errors.isEmpty else {
            let diagnostics = document.errors.map { Diagnostic.error(path, $0.line, $0.message) }
            return LoadedConfig(config: nil, diagnostics: diagnostics, lines: .init())
        }
        var decoder = GatewayConfigDecoder(file: path, root: document.table)
        var config = decoder.decode()
        var diagnostics = decoder.diagnostics
        if let user = config?.user, let accountProblem, let problem = accountProblem(user) {
            diagnostics.append(.error(path, decoder.lines.user, "user \"\(user)\": \(problem)"))
            config = nil
        }
        if case .account(let worker) = config?.workerUser, let accountProblem, let problem = accountProblem(worker) {
            let given = decoder.lines.workerUser == nil ? " (the default)" : ""
            diagnostics.append(.error(path, decoder.lines.workerUser, "worker_user \"\(worker)\"\(given): \(problem)"))
            config = nil
        }
        return LoadedConfig(
            config: config, diagnostics: PolicyLoader.sortedByLine(diagnostics), lines: decoder.lines)
    }
}
