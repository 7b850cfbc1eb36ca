import ArgumentParser
import FoundationEssentials

#if canImport(Glibc)
import Glibc
#endif
import TLSGateFirewall
import TLSGatePolicy
import TLSGateSupervisor
import TLSGateSystem

/// `tlsgate rules`: prints the nftables script `tlsgate run` would apply, applying nothing.
///
/// The script is whatever `Ruleset.script(for:existing:)` returns for `Supervisor.plan(...)`
/// and the tables as they are: the same calls the supervisor makes before `nft -f -`.
struct RulesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rules",
        abstract: "Print the nftables script `run` would apply for a config, without applying it.",
        discussion: """
            Prints on stdout the script `tlsgate run` gives to `nft -f -` (one transaction; \
            tables that exist are updated in place, their hooks kept), so \
            `tlsgate rules | nft -c -f -` checks it. Listen \
            ports are picked by the kernel each time the gateway starts; this command binds the \
            sockets the same way to show real ports, then closes them. In tproxy mode the policy \
            routing commands follow on stderr. The running gateway's table is \
            `nft list table inet tlsgate`.
            """
    )

    @Option(help: ArgumentHelp("The gateway's config file.", valueName: "file"))
    var config: String = TLSGateDefaults.configPath

    @Flag(
        help: ArgumentHelp(
            "Take the gateway out of service: delete both tables (inet tlsgate and the fail-closed guard inet tlsgate_guard), the saved guard ([intercept] guard_file) and the TPROXY routing. Run it with the gateway stopped; LAN traffic then flows without tlsgate.",
            valueName: "remove"))
    var remove = false

    @Flag(
        help: ArgumentHelp(
            "Apply the fail-closed guard the gateway saved ([intercept] guard_file), alone: run at boot before the network is up and before each start (even one that then fails), so nothing is forwarded in clear while the gateway is not running. Nothing saved yet is not an error.",
            valueName: "restore-guard"))
    var restoreGuard = false

    func validate() throws {
        if remove && restoreGuard {
            throw ValidationError("--remove and --restore-guard are opposites: give one")
        }
    }

    func run() throws {
        if remove {
            try removeEverything()
            return
        }
        if restoreGuard {
            try restoreSavedGuard()
            return
        }
        let (loaded, policies, diagnostics) = GatewayConfigLoader.loadAll(config, accountProblem: AccountLookup.problem)
        for diagnostic in diagnostics {
            StandardStream.error("\(diagnostic)\n")
        }
        guard let gatewayConfig = loaded, !diagnostics.contains(where: \.isError) else { throw ExitCode(2) }
        var bound: [(Policy, UInt16)] = []
        var sockets: [ListenSocket] = []
        for policy in policies {
            do {
                // TPROXY sockets need CAP_NET_ADMIN; the port is all this needs.
                let socket = try ListenSocket(address: gatewayConfig.intercept.listen.description, port: 0)
                sockets.append(socket)
                bound.append((policy, socket.port))
            } catch {
                StandardStream.error("tlsgate rules: \(error)\n")
                throw ExitCode(1)
            }
        }
        let uid = gatewayConfig.user.flatMap { try? Privileges.lookup(user: $0).uid } ?? getuid()
        let plan = Supervisor.plan(config: gatewayConfig, policies: bound, gatewayUID: uid)
        // As `run` would apply it now: in place over the tables that exist (none readable
        // without CAP_NET_ADMIN: then the script that creates them).
        print(Ruleset.script(for: plan, existing: NFTables.existingTables()), terminator: "")
        if gatewayConfig.intercept.mode == .tproxy {
            var note = "# policy routing for TPROXY (run adds it with ip):\n"
            for arguments in Ruleset.tproxyRouting(mark: gatewayConfig.intercept.tproxyMark, table: gatewayConfig.intercept.tproxyTable) {
                note += "# ip \(arguments.joined(separator: " "))\n"
            }
            StandardStream.error(note)
        }
        _ = sockets
    }

    /// Puts back the guard `run` saved. The config only says where the file is; a config
    /// with errors still gives that path (or the default), since this runs exactly when
    /// the gateway may not be able to start.
    private func restoreSavedGuard() throws {
        let path = Self.guardFile(config, loaded: GatewayConfigLoader.load(config).config)
        guard let path else {
            print("no guard saved: [intercept] guard_file = \"\" in \(config)")
            return
        }
        do {
            if try GuardFile.restore(from: path) {
                print("restored: the fail-closed guard inet \(Ruleset.guardTableName) from \(path)")
            } else {
                print("no guard saved at \(path) yet: nothing restored (the gateway saves it once it runs)")
            }
        } catch {
            StandardStream.error("tlsgate rules --restore-guard: \(error)\n")
            throw ExitCode(1)
        }
    }

    /// `[intercept] guard_file` of `config`: from the validated config (`loaded`), else (a
    /// config with errors elsewhere) read from the file's TOML directly, else the default.
    static func guardFile(_ config: String, loaded: GatewayConfig?) -> String? {
        if let loaded { return loaded.intercept.guardFile }
        if let data = FileManager.default.contents(atPath: config),
            let value = TOMLReader.read(String(decoding: data, as: UTF8.self)).table.table("intercept")?.value("guard_file"),
            let text = value.stringValue
        {
            return text.isEmpty ? nil : (text.hasPrefix("/") ? text : GatewayConfig.Intercept.defaultGuardFile)
        }
        return GatewayConfig.Intercept.defaultGuardFile
    }

    /// What a stopped or killed gateway leaves behind, removed in one transaction. Works
    /// with a missing or broken config (the TPROXY routing then uses the defaults).
    private func removeEverything() throws {
        let loaded = GatewayConfigLoader.load(config).config
        let intercept = loaded?.intercept ?? GatewayConfig.Intercept()
        do {
            try NFTables.deleteTables(includingGuard: true)
        } catch {
            StandardStream.error("tlsgate rules --remove: \(error) (needs root or CAP_NET_ADMIN)\n")
            throw ExitCode(1)
        }
        for arguments in Ruleset.tproxyRoutingRemoval(mark: intercept.tproxyMark, table: intercept.tproxyTable) {
            // Absent unless a tproxy gateway was killed: a failure here means nothing to remove.
            try? IPRoute.run(arguments)
        }
        var saved = ""
        if let path = Self.guardFile(config, loaded: loaded), FileManager.default.fileExists(atPath: path) {
            // Or the boot-time restore would put the guard back after the next reboot.
            do {
                try FileManager.default.removeItem(atPath: path)
                saved = ", the saved guard \(path)"
            } catch {
                StandardStream.error("tlsgate rules --remove: cannot delete the saved guard \(path): \(error)\n")
                throw ExitCode(1)
            }
        }
        print("removed: nftables tables inet \(Ruleset.tableName) and inet \(Ruleset.guardTableName), TPROXY routing (mark 0x\(String(intercept.tproxyMark, radix: 16)), table \(intercept.tproxyTable))\(saved)")
    }
}
