import ArgumentParser
import Foundation
import TLSGateFirewall
import TLSGatePolicy
import TLSGateSupervisor
import TLSGateSystem

/// `tlsgate rules`: prints the nftables script `tlsgate run` would apply, applying nothing.
///
/// The script is whatever `Ruleset.script(for:)` returns for `Supervisor.plan(...)`: the
/// same two calls the supervisor makes before `nft -f -`, so the printed script and the
/// applied one cannot differ.
struct RulesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rules",
        abstract: "Print the nftables script `run` would apply for a config, without applying it.",
        discussion: """
            Prints on stdout exactly the script `tlsgate run` gives to `nft -f -` (it replaces \
            the gateway's table atomically), so `tlsgate rules | nft -c -f -` checks it. Listen \
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
            "Take the gateway out of service: delete both tables (inet tlsgate and the fail-closed guard inet tlsgate_guard) and the TPROXY routing. Run it with the gateway stopped; LAN traffic then flows without tlsgate.",
            valueName: "remove"))
    var remove = false

    func run() throws {
        if remove {
            try removeEverything()
            return
        }
        let (loaded, policies, diagnostics) = GatewayConfigLoader.loadAll(config, accountProblem: AccountLookup.problem)
        for diagnostic in diagnostics {
            FileHandle.standardError.write(Data("\(diagnostic)\n".utf8))
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
                FileHandle.standardError.write(Data("tlsgate rules: \(error)\n".utf8))
                throw ExitCode(1)
            }
        }
        let uid = gatewayConfig.user.flatMap { try? Privileges.lookup(user: $0).uid } ?? getuid()
        let plan = Supervisor.plan(config: gatewayConfig, policies: bound, gatewayUID: uid)
        print(Ruleset.script(for: plan), terminator: "")
        if gatewayConfig.intercept.mode == .tproxy {
            var note = "# policy routing for TPROXY (run adds it with ip):\n"
            for arguments in Ruleset.tproxyRouting(mark: gatewayConfig.intercept.tproxyMark, table: gatewayConfig.intercept.tproxyTable) {
                note += "# ip \(arguments.joined(separator: " "))\n"
            }
            FileHandle.standardError.write(Data(note.utf8))
        }
        _ = sockets
    }

    /// What a stopped or killed gateway leaves behind, removed in one transaction. Works
    /// with a missing or broken config (the TPROXY routing then uses the defaults).
    private func removeEverything() throws {
        let loaded = GatewayConfigLoader.load(config).config
        let intercept = loaded?.intercept ?? GatewayConfig.Intercept()
        do {
            try NFTables.deleteTables(includingGuard: true)
        } catch {
            FileHandle.standardError.write(Data("tlsgate rules --remove: \(error) (needs root or CAP_NET_ADMIN)\n".utf8))
            throw ExitCode(1)
        }
        for arguments in Ruleset.tproxyRouting(mark: intercept.tproxyMark, table: intercept.tproxyTable) {
            var delete = arguments
            if let add = delete.firstIndex(of: "add") { delete[add] = "del" }
            // Absent unless a tproxy gateway was killed: a failure here means nothing to remove.
            try? IPRoute.run(delete)
        }
        print("removed: nftables tables inet \(Ruleset.tableName) and inet \(Ruleset.guardTableName), TPROXY routing (mark 0x\(String(intercept.tproxyMark, radix: 16)), table \(intercept.tproxyTable))")
    }
}
