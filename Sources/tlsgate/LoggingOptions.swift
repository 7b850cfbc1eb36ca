import ArgumentParser
import Logging

/// `--log-format` and `--log-level`, shared by the commands that run for a while.
struct LoggingOptions: ParsableArguments {
    @Option(help: "Log line format: text or json.")
    var logFormat: String = "text"

    @Option(help: "Lowest level logged: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "info"

    func validate() throws {
        guard KeyValueLogHandler.Format(rawValue: logFormat) != nil else {
            throw ValidationError("--log-format must be text or json, not \"\(logFormat)\"")
        }
        guard Logger.Level(rawValue: logLevel) != nil else {
            throw ValidationError("--log-level must be one of trace, debug, info, notice, warning, error, critical")
        }
    }

    /// Sets up swift-log for the process; only the executable does this.
    func bootstrap() {
        let format = KeyValueLogHandler.Format(rawValue: logFormat) ?? .text
        let level = Logger.Level(rawValue: logLevel) ?? .info
        LoggingSystem.bootstrap { _ in KeyValueLogHandler(format: format, level: level) }
    }
}
