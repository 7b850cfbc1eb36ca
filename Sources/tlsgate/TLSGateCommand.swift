import ArgumentParser

@main
struct TLSGateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tlsgate",
        abstract: "Transparent egress TLS-upgrade gateway.",
        version: TLSGateVersion.string,
        subcommands: [CheckCommand.self, WorkerCommand.self]
    )
}

enum TLSGateVersion {
    static let string = "0.1.0"
}
