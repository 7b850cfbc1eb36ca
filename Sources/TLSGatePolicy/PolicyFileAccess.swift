/// The files a worker reads when it starts (CA bundles, CRLs, the client certificate and
/// key) checked as the account the worker runs as, not as whoever runs `check` or starts
/// the gateway: a root-only CA file is a configuration error with `file:line`, not a
/// worker that crashes at every start.
///
/// Pure: how a file is tried is passed in (`TLSGateSystem.Privileges.readProblem` in the
/// executable), so the messages are tested without accounts.
public enum PolicyFileAccess {
    /// One diagnostic per file `account` cannot read, on the line of the key that names it.
    /// `problem(path)` returns why the account cannot open `path`, or nil.
    public static func diagnostics(
        for policies: [Policy], account: String, problem: (String) -> String?
    ) -> [Diagnostic] {
        var result: [Diagnostic] = []
        for policy in policies {
            let files: [(key: String, path: String)] =
                policy.tls.caFiles.map { ("trust", $0) } + policy.tls.crlFiles.map { ("crl", $0) }
                + [policy.tls.clientCertificate.map { ("client_certificate", $0) }, policy.tls.clientKey.map { ("client_key", $0) }]
                .compactMap { $0 }
            guard !files.isEmpty else { continue }
            let lines = KeyLines(policy: policy)
            var seen = Set<String>()
            for file in files where seen.insert(file.path).inserted {
                guard let why = problem(file.path) else { continue }
                result.append(
                    .error(
                        policy.sourcePath, lines.line(of: file.key, path: file.path),
                        "\(file.key): \(file.path) cannot be read by the account \"\(account)\" the workers run as (\(why)): make it readable by that account (a key: chown \(account) and chmod 600; a certificate or CRL: chmod 644) and its folders searchable"
                    ))
            }
        }
        return result
    }

    /// With one account per policy (`worker_user = "per-policy"`): one error per client key
    /// that the account of another policy can read too, so that policy's worker could use
    /// it. `readable(path, other)` tells whether `other`'s account can open `path`.
    public static func clientKeysShared(
        by policies: [Policy], account: (Policy) -> String, readable: (String, Policy) -> Bool
    ) -> [Diagnostic] {
        var result: [Diagnostic] = []
        for policy in policies {
            guard let key = policy.tls.clientKey else { continue }
            let own = account(policy)
            for other in policies where other.name != policy.name && account(other) != own && readable(key, other) {
                result.append(
                    .error(
                        policy.sourcePath, KeyLines(policy: policy).line(of: "client_key", path: key),
                        "client_key: \(key) can also be read by the account \"\(account(other))\" of policy \(other.name): with worker_user = \"per-policy\" a client key must be readable by its own policy's account only (chown \(own) and chmod 600)"
                    ))
                break
            }
        }
        return result
    }

    /// The lines of a policy's `[tls]` keys and array elements, read again from its file.
    struct KeyLines {
        let table: TOMLTable?
        let folder: String

        init(policy: Policy) {
            folder = PathText.directory(of: policy.sourcePath)
            if let text = try? TextFile.readText(policy.sourcePath, limit: PolicyLoader.maximumFileSize) {
                table = TOMLReader.read(text).table.table("tls")
            } else {
                table = nil
            }
        }

        func line(of key: String, path: String) -> Int? {
            guard let entry = table?[key], case .value(let value) = entry.item else { return nil }
            let candidates = value.arrayValue ?? [value]
            for element in candidates {
                if let text = element.stringValue, PathText.absolute(PathText.join(folder, text)) == path {
                    return element.line
                }
            }
            return entry.line
        }
    }
}
