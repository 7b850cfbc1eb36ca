import ArgumentParser
import FoundationEssentials

#if canImport(Glibc)
import Glibc
#endif

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
        subcommands: [RunCommand.self, CheckCommand.self, RulesCommand.self, StatusCommand.self, ReloadCommand.self, ProbeCommand.self, WorkerCommand.self, SeccompSelftestCommand.self]
    )

    /// Like ArgumentParser's main, but bad usage exits 2 (not 64), as documented, and a
    /// usage error a subcommand finds while running (`probe` without `--address` on a
    /// policy with several addresses) shows that subcommand's usage, not the root's.
    static func main() {
        var parsed: ParsableCommand.Type = Self.self
        do {
            var command = try parseAsRoot()
            parsed = type(of: command)
            try command.run()
        } catch {
            let code = exitCode(for: error)
            if code == .validationFailure {
                StandardStream.error(usageMessage(for: error, in: parsed) + "\n")
                Glibc.exit(2)
            }
            exit(withError: error)
        }
    }

    /// The message for a usage error: ArgumentParser's own when it found it while parsing;
    /// for one thrown by a subcommand's `run()`, the same shape with that subcommand's usage.
    static func usageMessage(for error: Error, in command: ParsableCommand.Type) -> String {
        guard ObjectIdentifier(command) != ObjectIdentifier(Self.self), error is ValidationError else { return fullMessage(for: error) }
        let name = command.configuration.commandName ?? "\(command)"
        return """
            Error: \(message(for: error))
            Usage: \(usageString(for: command))
              See 'tlsgate \(name) --help' for more information.
            """
    }
}

enum TLSGateVersion {
    static let string = "0.2.0"
}

/// Where `run`, `check` and `rules` look for the config when not given `--config`.
enum TLSGateDefaults {
    static let configPath = "/etc/tlsgate/tlsgate.toml"
}
