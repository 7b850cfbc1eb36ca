import ArgumentParser
import FoundationEssentials

#if canImport(Glibc)
import Glibc
#endif
import TLSGatePolicy
import TLSGateRelay

/// `tlsgate check [--config FILE] [DIR]`: validates the global config and every policy
/// file and prints either all problems (stderr, exit 2) or a one-line summary of the
/// config and of each policy (stdout, exit 0). With neither, checks the default config,
/// as `run` and `rules` read it.
///
/// The validation is the same code the supervisor runs at start and on reload (the account
/// check included); the formatting lives in `PolicyLoadResult` and
/// `GatewayConfig.summaryLine` so it is unit tested there.
struct CheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Check the config and policy files and print what each one does.",
        discussion: """
            With --config FILE (default \(TLSGateDefaults.configPath)), checks the global config, \
            its user account and every *.toml file in the folder its `policies` key names; with \
            DIR, checks only the policy files in DIR. Reports every error as FILE:LINE: message \
            and exits 2 if there is any. Warnings are printed but do not fail the check.
            """
    )

    @Option(
        name: .long,
        help: ArgumentHelp(
            "The global config file, checked with the policies it names (default: \(TLSGateDefaults.configPath)).",
            valueName: "file"))
    var config: String?

    @Argument(help: ArgumentHelp("A policies folder to check alone (takes precedence over --config).", valueName: "dir"))
    var directory: String?

    func run() throws {
        let result: PolicyLoadResult
        var header: [String] = []
        if let directory {
            result = PolicyLoader.loadDirectory(directory, tlsCheck: PolicyTLSCheck.check)
        } else {
            let path = config ?? TLSGateDefaults.configPath
            if config == nil && !FileManager.default.fileExists(atPath: path) {
                printError("""
                    tlsgate check: \(path): no such file (the default config). Give the config with \
                    --config FILE or a policies folder (tlsgate check DIR), or install one: \
                    install -D -m 0644 Scripts/tlsgate.example.toml \(path)
                    """)
                throw ExitCode(2)
            }
            let loaded = GatewayValidation.loadAll(path)
            result = PolicyLoadResult(policies: loaded.policies, diagnostics: loaded.diagnostics)
            header = loaded.config.map { [$0.summaryLine] } ?? []
        }

        for line in result.diagnosticLines {
            printError(line)
        }
        if result.hasErrors {
            printError(result.errorSummaryLine)
            throw ExitCode(2)
        }
        for line in header + result.summaryLines {
            print(line)
        }
    }

    private func printError(_ line: String) {
        StandardStream.error(line + "\n")
    }
}
