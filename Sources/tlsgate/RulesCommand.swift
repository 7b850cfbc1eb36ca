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

    func run() throws {
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
}
