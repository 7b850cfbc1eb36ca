/// What loading a policies folder gives: the valid policies and every diagnostic.
///
/// `policies` holds only the files with no error. The text helpers here are what
/// `tlsgate check` prints, so they are tested without running the command.
public struct PolicyLoadResult: Sendable, Equatable {
    /// The policies whose files have no error, in file-name order.
    public let policies: [Policy]
    /// All errors and warnings, grouped by file (in file order), then by line.
    public let diagnostics: [Diagnostic]

    public init(policies: [Policy], diagnostics: [Diagnostic]) {
        self.policies = policies
        self.diagnostics = diagnostics
    }

    public var errors: [Diagnostic] { diagnostics.filter(\.isError) }
    public var warnings: [Diagnostic] { diagnostics.filter { !$0.isError } }
    public var hasErrors: Bool { diagnostics.contains(where: \.isError) }

    /// How many distinct files (or folders) have at least one error.
    public var filesWithErrors: Int {
        var files: [String] = []
        for diagnostic in diagnostics where diagnostic.isError && !files.contains(diagnostic.file) {
            files.append(diagnostic.file)
        }
        return files.count
    }

    /// One line per diagnostic, as printed to stderr.
    public var diagnosticLines: [String] { diagnostics.map(\.description) }

    /// `N error(s) in M file(s)`.
    public var errorSummaryLine: String {
        "\(errors.count) error(s) in \(filesWithErrors) file(s)"
    }

    /// One aligned line per policy, then `K policies OK`.
    public var summaryLines: [String] {
        let width = policies.map(\.name.count).max() ?? 0
        let count = policies.count
        return policies.map { $0.summaryLine(nameWidth: width) }
            + ["\(count) \(count == 1 ? "policy" : "policies") OK"]
    }
}
