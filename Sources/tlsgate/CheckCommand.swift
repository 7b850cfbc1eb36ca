import ArgumentParser
import Foundation
import TLSGatePolicy

/// `tlsgate check [--config FILE] [DIR]`: validates every policy file and prints either
/// all problems (stderr, exit 2) or a one-line summary per policy (stdout, exit 0).
///
/// The validation is the same code the supervisor runs at start and on reload; the
/// formatting lives in `PolicyLoadResult` so it is unit tested there.
struct CheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Check policy files and print what each one does.",
        discussion: """
            Reads every *.toml file in DIR (or in the folder named by `policies = "DIR"` in \
            the --config file), reports every error as FILE:LINE: message, and exits 2 if \
            there is any. Warnings are printed but do not fail the check.
            """
    )

    @Option(name: .long, help: ArgumentHelp("The global config file; its `policies` key names the folder.", valueName: "file"))
    var config: String?

    @Argument(help: ArgumentHelp("The policies folder (takes precedence over --config).", valueName: "dir"))
    var directory: String?

    func validate() throws {
        if directory == nil && config == nil {
            throw ValidationError("Give the policies folder (tlsgate check Policies/) or --config FILE.")
        }
    }

    func run() throws {
        let result: PolicyLoadResult
        if let directory {
            result = PolicyLoader.loadDirectory(directory)
        } else if let config {
            let found = PolicyLoader.policiesDirectory(configFile: config)
            if let policies = found.directory {
                result = PolicyLoader.loadDirectory(policies)
            } else {
                result = PolicyLoadResult(policies: [], diagnostics: found.diagnostics)
            }
        } else {
            throw ValidationError("Give the policies folder (tlsgate check Policies/) or --config FILE.")
        }

        for line in result.diagnosticLines {
            printError(line)
        }
        if result.hasErrors {
            printError(result.errorSummaryLine)
            throw ExitCode(2)
        }
        for line in result.summaryLines {
            print(line)
        }
    }

    private func printError(_ line: String) {
        FileHandle.standardError.write(Data((line + "\n").utf8))
    }
}
