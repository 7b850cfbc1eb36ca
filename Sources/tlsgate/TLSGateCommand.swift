import ArgumentParser
import Foundation

@main
struct TLSGateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tlsgate",
        abstract: "Transparent egress TLS-upgrade gateway.",
        discussion: """
            LAN clients keep speaking plain text to public servers; the gateway's firewall \
            redirects those connections to tlsgate, which re-opens each one as verified TLS \
            to the server's TLS port under the policy written for that destination.

            Exit status: 0 success, 1 runtime failure, 2 bad usage or bad configuration. \
            `tlsgate worker` is internal: the supervisor (`tlsgate run`) starts one per policy.
            """,
        version: TLSGateVersion.string,
        subcommands: [RunCommand.self, CheckCommand.self, RulesCommand.self, ProbeCommand.self, WorkerCommand.self]
    )

    /// Like ArgumentParser's main, but bad usage exits 2 (not 64), as documented.
    static func main() {
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            let code = exitCode(for: error)
            if code == .validationFailure {
                FileHandle.standardError.write(Data((fullMessage(for: error) + "\n").utf8))
                Foundation.exit(2)
            }
            exit(withError: error)
        }
    }
}

enum TLSGateVersion {
    static let string = "0.2.0"
}
