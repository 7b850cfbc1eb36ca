import ArgumentParser

@main
struct TLSGateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tlsgate",
        abstract: "Transparent egress TLS-upgrade gateway.",
        version: TLSGateVersion.string,
        subcommands: [RunCommand.self, CheckCommand.self, RulesCommand.self, WorkerCommand.self]
    )
}

enum TLSGateVersion {
    static let string = "0.1.0"
}
