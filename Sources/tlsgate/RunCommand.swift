import ArgumentParser
import CoreMetrics
import FoundationEssentials

#if canImport(Glibc)
import Glibc
#endif
import Logging
import Prometheus
import TLSGatePolicy
import TLSGateRelay
import TLSGateSupervisor
import TLSGateSystem

/// `tlsgate run`: the supervisor, in the foreground.
struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run the gateway: interception rules, one worker per policy, signals.",
        discussion: """
            Reads the config and every policy, refuses to start on any error (the messages of \
            `tlsgate check`), binds one listening socket per policy on a port the kernel picks, \
            installs the nftables table `inet tlsgate`, and starts one worker per policy. \
            SIGHUP reloads (an invalid new config keeps the old one), SIGTERM or SIGINT drains \
            and removes the table. Started as root it becomes the config's `user` keeping only \
            CAP_NET_ADMIN (and CAP_SETUID, CAP_SETGID, CAP_KILL to run the workers as \
            `worker_user`); started by systemd as that user with AmbientCapabilities it never \
            has root.
            """
    )

    @Option(help: ArgumentHelp("The gateway's config file.", valueName: "file"))
    var config: String = TLSGateDefaults.configPath

    @Flag(help: "Allow running as root with every capability (debugging only; never in production).")
    var allowRoot = false

    @Option(help: "Log line format: text or json (default: the config's [log] format).")
    var logFormat: String?

    @Option(help: "Lowest level logged (default: the config's [log] level).")
    var logLevel: String?

    func validate() throws {
        if let logFormat, GatewayConfig.LogFormat(rawValue: logFormat) == nil {
            throw ValidationError("--log-format must be text or json, not \"\(logFormat)\"")
        }
        if let logLevel, Logger.Level(rawValue: logLevel) == nil {
            throw ValidationError("--log-level must be one of trace, debug, info, notice, warning, error, critical")
        }
    }

    func run() throws {
        let path = config
        let (loaded, policies, diagnostics) = GatewayValidation.loadAll(path)
        for diagnostic in diagnostics {
            StandardStream.error("\(diagnostic)\n")
        }
        guard var gatewayConfig = loaded, !diagnostics.contains(where: \.isError) else {
            StandardStream.error("tlsgate run: not starting: fix the errors above (tlsgate check --config \(path))\n")
            throw ExitCode(2)
        }
        if let logFormat { gatewayConfig.log.format = GatewayConfig.LogFormat(rawValue: logFormat)! }
        if let logLevel { gatewayConfig.log.level = logLevel }
        let format = KeyValueLogHandler.Format(rawValue: gatewayConfig.log.format.rawValue) ?? .text
        let level = Logger.Level(rawValue: gatewayConfig.log.level) ?? .info
        LoggingSystem.bootstrap { _ in KeyValueLogHandler(format: format, level: level) }
        let logger = Logger(label: "tlsgate.supervisor")
        for diagnostic in diagnostics where !diagnostic.isError {
            logger.warning("\(diagnostic)")
        }

        // The control socket is made before the privileges go (the folder may be root's),
        // owned by the account the gateway becomes.
        let controlSocket: Int32?
        do {
            controlSocket = try openControlSocket(gatewayConfig)
        } catch {
            StandardStream.error("tlsgate run: cannot create the control socket: \(error)\n")
            throw ExitCode(1)
        }

        // Privileges first: nothing below runs as root.
        do {
            try dropPrivileges(gatewayConfig, logger: logger)
        } catch let error as ValidationError {
            // A configuration problem (root without user, unknown account): exit 2.
            StandardStream.error("tlsgate run: \(error)\n")
            throw ExitCode(2)
        } catch {
            StandardStream.error("tlsgate run: \(error)\n")
            throw ExitCode(1)
        }

        let overrides = (logFormat, logLevel)
        let supervisor = Supervisor(
            config: gatewayConfig, policies: policies,
            options: .init(
                executable: ProcessSpawner.currentExecutable(), gatewayUID: getuid(),
                admin: Self.bootstrapMetrics(controlSocket: controlSocket, path: gatewayConfig.admin.controlSocket)),
            logger: logger,
            reloader: {
                var (config, policies, diagnostics) = GatewayValidation.loadAll(path)
                if let format = overrides.0 { config?.log.format = GatewayConfig.LogFormat(rawValue: format)! }
                if let level = overrides.1 { config?.log.level = level }
                return (config, policies, diagnostics)
            })
        let status = supervisor.run()
        if status != 0 { throw ExitCode(status) }
    }

    /// The Prometheus exporter behind swift-metrics, with the workers' histogram buckets.
    static func bootstrapMetrics(controlSocket: Int32?, path: String?) -> AdminOptions {
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        let buckets = WorkerStats.bucketBounds.map { Duration.nanoseconds(Int64($0)) }
        for name in GatewayMetrics.histogramNames.values { factory.durationHistogramBuckets[name] = buckets }
        MetricsSystem.bootstrap(factory)
        return AdminOptions(
            metrics: GatewayMetrics(factory: factory),
            render: {
                var buffer: [UInt8] = []
                registry.emit(into: &buffer)
                return buffer
            },
            controlSocket: controlSocket, controlSocketPath: controlSocket == nil ? nil : path)
    }

    /// `[admin] control_socket` listening (nil when set to ""); started as root with a
    /// `user`, the socket (and a folder made for it) belongs to that account.
    private func openControlSocket(_ config: GatewayConfig) throws -> Int32? {
        guard let path = config.admin.controlSocket else { return nil }
        var owner: (uid: UInt32, gid: UInt32)?
        if Privileges.isRoot, let user = config.user, user != "root", let account = try? Privileges.lookup(user: user) {
            owner = (account.uid, account.gid)
        }
        return try UnixSocket.listen(path: path, owner: owner)
    }

    /// What the supervisor keeps, as logged.
    static func capabilities(_ workerAccounts: Bool) -> String {
        workerAccounts
            ? "CAP_NET_ADMIN (ambient, for nft and ip) and CAP_SETUID, CAP_SETGID, CAP_KILL (not ambient, for worker_user)"
            : "CAP_NET_ADMIN only"
    }

    private func dropPrivileges(_ config: GatewayConfig, logger: Logger) throws {
        // Workers under their own account: the supervisor keeps what starting, checking and
        // signalling them needs (GatewayValidation has checked that it has it).
        let workerAccounts = config.workerUser != .same
        if Privileges.isRoot {
            guard let user = config.user, user != "root" else {
                if allowRoot {
                    logger.warning("running as root with every capability (--allow-root): for debugging only")
                    return
                }
                throw ValidationError("""
                    refusing to run as root with every capability. Set user = "tlsgate" in \(config.sourcePath) \
                    (the gateway then switches to it, keeping only CAP_NET_ADMIN), or run it from the systemd unit \
                    (Scripts/tlsgate.service: User=tlsgate, AmbientCapabilities=CAP_NET_ADMIN). \
                    --allow-root overrides this for debugging.
                    """)
            }
            let account: Privileges.Account
            do {
                account = try Privileges.lookup(user: user)
            } catch {
                throw ValidationError("\(config.sourcePath): user = \"\(user)\": \(error)")
            }
            try Privileges.becomeGateway(account, workerAccounts: workerAccounts)
            logger.info("running as \(account.name) with \(Self.capabilities(workerAccounts))", metadata: ["uid": "\(account.uid)"])
        } else {
            try Privileges.keepGatewayCapabilities(workerAccounts: workerAccounts)
            logger.info("running with \(Self.capabilities(workerAccounts))", metadata: ["uid": "\(getuid())"])
        }
    }
}
