/// Reads and validates policy files.
///
/// Every file is read and checked completely, so one run reports all problems of all files.
/// Paths in diagnostics are the paths as given (plus the file name for a folder), so a
/// relative folder prints relative paths.
public enum PolicyLoader {
    /// Largest policy file read; anything bigger is certainly not a policy.
    public static let maximumFileSize = 1 << 20

    /// Loads every `*.toml` file in `path`, sorted by name (hidden files and other files
    /// are ignored), and checks the policies against each other (two policies may not
    /// claim the same destination and match port). A missing or empty folder is an error.
    ///
    /// `tlsCheck`, when given, runs on every policy without errors (see `TLSSettingsCheck`).
    /// `fileScope`, when given, wraps each policy's decoding and dry run (see `FileScope`).
    public static func loadDirectory(
        _ path: String, tlsCheck: TLSSettingsCheck? = nil, fileScope: FileScope? = nil
    ) -> PolicyLoadResult {
        guard let isDirectory = TextFile.isDirectory(path) else {
            return PolicyLoadResult(policies: [], diagnostics: [.error(path, nil, "no such directory")])
        }
        guard isDirectory else {
            return PolicyLoadResult(policies: [], diagnostics: [.error(path, nil, "not a directory")])
        }
        let names: [String]
        do {
            names = try directoryEntries(path)
        } catch {
            return PolicyLoadResult(policies: [], diagnostics: [.error(path, nil, "cannot list directory: \(error.reason)")])
        }
        let files = names.filter { $0.hasSuffix(".toml") && !$0.hasPrefix(".") }.sorted()
        guard !files.isEmpty else {
            return PolicyLoadResult(policies: [], diagnostics: [.error(path, nil, "no policy files (*.toml) in this directory")])
        }
        return load(files: files.map { PathText.join(path, $0) }, tlsCheck: tlsCheck, fileScope: fileScope)
    }

    /// Runs `body` (the decoding of policy `name`'s file, which reads the files it names,
    /// and the dry run of its `[tls]` table) as whoever reads those files: `tlsgate run`,
    /// `check` and reload pass one that takes the file identity of the policy's worker
    /// account, since a client key belongs to that account (mode 0600) and the supervisor's
    /// own account may not read it. The policy file itself is read before, as this process.
    /// `body` gets the name of the account it runs as (nil: this process), for messages.
    public typealias FileScope = (_ name: String, _ body: (_ account: String?) -> Void) -> Void

    /// Loads the given policy files (in this order) and checks them against each other.
    public static func load(files: [String], tlsCheck: TLSSettingsCheck? = nil, fileScope: FileScope? = nil) -> PolicyLoadResult {
        let loaded = files.map { loadDetailed($0, tlsCheck: tlsCheck, fileScope: fileScope) }
        let conflicts = conflictDiagnostics(loaded)
        var policies: [Policy] = []
        var diagnostics: [Diagnostic] = []
        for file in loaded {
            let fileDiagnostics = sortedByLine(file.diagnostics + conflicts.filter { $0.file == file.path })
            diagnostics += fileDiagnostics
            if let policy = file.policy, !fileDiagnostics.contains(where: \.isError) {
                policies.append(policy)
            }
        }
        return PolicyLoadResult(policies: policies, diagnostics: diagnostics)
    }

    /// Loads one policy file on its own (no cross-file checks). The policy is nil when
    /// there is any error; warnings may come with a policy.
    public static func loadFile(_ path: String, tlsCheck: TLSSettingsCheck? = nil) -> (Policy?, [Diagnostic]) {
        let file = loadDetailed(path, tlsCheck: tlsCheck)
        return (file.policy, sortedByLine(file.diagnostics))
    }

    // MARK: - Internals

    /// One file's outcome, with the lines the conflict check points at.
    struct LoadedFile {
        let path: String
        let policy: Policy?
        let diagnostics: [Diagnostic]
        let lines: PolicyFileDecoder.Lines
    }

    static func loadDetailed(_ path: String, tlsCheck: TLSSettingsCheck? = nil, fileScope: FileScope? = nil) -> LoadedFile {
        let text: String
        do {
            text = try TextFile.readText(path, limit: maximumFileSize)
        } catch {
            return LoadedFile(
                path: path, policy: nil, diagnostics: [.error(path, nil, "cannot read: \(error.reason)")],
                lines: .init())
        }
        let document = TOMLReader.read(text)
        guard document.errors.isEmpty else {
            let diagnostics = document.errors.map { Diagnostic.error(path, $0.line, $0.message) }
            return LoadedFile(path: path, policy: nil, diagnostics: diagnostics, lines: .init())
        }
        var decoder = PolicyFileDecoder(file: path, root: document.table)
        var policy: Policy?
        var diagnostics: [Diagnostic] = []
        let decode = { (account: String?) in
            decoder.readerAccount = account
            policy = decoder.decode()
            diagnostics = decoder.diagnostics
            if let decoded = policy, let tlsCheck {
                // The dry run: the TLS library builds the policy's context, without connecting.
                let problems = tlsCheck(decoded.tls)
                for problem in problems {
                    diagnostics.append(.error(path, decoder.line(of: problem.key, in: "tls"), problem.message))
                }
                if !problems.isEmpty { policy = nil }
            }
        }
        if let fileScope {
            fileScope(PathText.stem(of: path), decode)
        } else {
            decode(nil)
        }
        return LoadedFile(path: path, policy: policy, diagnostics: diagnostics, lines: decoder.lines)
    }

    static func sortedByLine(_ diagnostics: [Diagnostic]) -> [Diagnostic] {
        diagnostics.enumerated().sorted { a, b in
            let lineA = a.element.line ?? 0
            let lineB = b.element.line ?? 0
            return lineA != lineB ? lineA < lineB : a.offset < b.offset
        }.map(\.element)
    }

    private static func directoryEntries(_ path: String) throws(TextFile.ReadError) -> [String] {
        try TextFile.listDirectory(path)
    }
}
