import ArgumentParser
import FoundationEssentials

#if canImport(Glibc)
import Glibc
#endif
import TLSGateSupervisor

/// `tlsgate reload`: the running supervisor reloads (as on SIGHUP) and says how it went.
struct ReloadCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reload",
        abstract: "Reload the running gateway's config and policies, and wait for the result.",
        discussion: """
            Asks the supervisor over its control socket to reload, the same as SIGHUP, and \
            waits until the new config is live or refused. Exit status: 0 the new config is \
            live (every added or changed policy's new worker is ready); 2 the config was \
            refused (every file:line error is printed; the running config stays); 1 a new \
            worker failed before it was ready (the old one keeps serving), no gateway answers, \
            or no result within --timeout.
            """
    )

    @Option(help: ArgumentHelp("The gateway's config file (to find the control socket).", valueName: "file"))
    var config: String = TLSGateDefaults.configPath

    @Option(help: ArgumentHelp("Seconds to wait for the result.", valueName: "seconds"))
    var timeout: Double = 90

    func validate() throws {
        guard timeout > 0, timeout <= 3600 else { throw ValidationError("--timeout must be between 0 and 3600 seconds") }
    }

    func run() throws {
        let outcome: ReloadOutcome
        do {
            let socket = try ControlClient.socketPath(config: config)
            outcome = try ControlClient.decode(ReloadOutcome.self, ControlClient.ask("reload", socket: socket, timeout: timeout))
        } catch {
            StandardStream.error("tlsgate reload: \(error)\n")
            throw ExitCode(1)
        }
        let changes = [("added", outcome.added), ("changed", outcome.changed), ("removed", outcome.removed)]
            .filter { !$0.1.isEmpty }.map { "\($0.0) \($0.1.joined(separator: ","))" }
        let summary = changes.isEmpty ? "no policy changed" : changes.joined(separator: "; ")
        switch outcome.result {
        case "live":
            print("reloaded: the new configuration is live (generation \(outcome.generation)): \(summary)")
        case "refused":
            for error in outcome.errors { StandardStream.error("\(error)\n") }
            StandardStream.error("tlsgate reload: refused: fix the errors above; the running configuration stays\n")
            throw ExitCode(2)
        case "failed":
            StandardStream.error(
                "tlsgate reload: the new worker of \(outcome.failed.joined(separator: ", ")) failed before it was ready; the old one keeps serving (see the gateway's log: reload failed)\n"
            )
            throw ExitCode(1)
        default:
            StandardStream.error("tlsgate reload: not reloaded: the gateway is \(outcome.result)\n")
            throw ExitCode(1)
        }
    }
}
