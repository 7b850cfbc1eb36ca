import Foundation

/// The fail-closed guard saved to a file, so it can be put back where the kernel lost it:
/// at boot (before the network is up) and before every start, even one that then fails on
/// a broken config. The supervisor saves it after each successful application of its
/// tables; `tlsgate rules --restore-guard` applies the saved file.
///
/// The file holds exactly what `Ruleset.guardBody` gives, behind the create-then-delete
/// preamble of that one table, so restoring it never touches anything else; a file that
/// names any other table is refused.
public enum GuardFile {
    public struct Failure: Error, Sendable, CustomStringConvertible {
        public let description: String
    }

    static let header = "# tlsgate: fail-closed guard (inet \(Ruleset.guardTableName)); written by `tlsgate run`, applied by `tlsgate rules --restore-guard`\n"
    /// Largest guard file restored.
    static let maximumSize = 16 << 20

    /// The script saved and restored: the guard table alone, replaced atomically.
    public static func script(for plan: InterceptionPlan) -> String {
        header
            + "table \(Ruleset.tableFamily) \(Ruleset.guardTableName)\n"
            + "delete table \(Ruleset.tableFamily) \(Ruleset.guardTableName)\n"
            + Ruleset.guardBody(for: plan)
    }

    /// Writes the guard for `plan` to `path` atomically (a temporary file in the same
    /// folder, then rename), mode 0600.
    public static func save(_ plan: InterceptionPlan, to path: String) throws {
        let data = Data(script(for: plan).utf8)
        let temporary = path + ".tmp"
        guard FileManager.default.createFile(atPath: temporary, contents: data, attributes: [.posixPermissions: 0o600])
        else {
            throw Failure(description: "cannot write \(temporary): check that its folder exists and the gateway's account may write there")
        }
        if rename(temporary, path) != 0 {
            let reason = String(cString: strerror(errno))
            unlink(temporary)
            throw Failure(description: "cannot rename \(temporary) to \(path): \(reason)")
        }
    }

    /// Checks a saved guard: our header, and no table but the guard.
    public static func validate(_ text: String) throws {
        guard text.hasPrefix(header) else {
            throw Failure(description: "not a guard saved by tlsgate (the first line differs)")
        }
        for line in text.split(separator: "\n") {
            let words = line.split(separator: " ")
            guard let first = words.first else { continue }
            if first == "table" || first == "delete" {
                let table = first == "delete" ? Array(words.dropFirst()) : Array(words)
                guard table.count >= 3, table[0] == "table", table[1] == Substring(Ruleset.tableFamily),
                    table[2] == Substring(Ruleset.guardTableName)
                else {
                    throw Failure(description: "the saved guard names another table: \(line)")
                }
            }
        }
    }

    /// Applies the guard saved at `path`; false when there is no such file.
    @discardableResult
    public static func restore(from path: String) throws -> Bool {
        guard FileManager.default.fileExists(atPath: path) else { return false }
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: path),
            (attributes[.type] as? FileAttributeType) == .typeRegular,
            let size = attributes[.size] as? Int, size <= maximumSize,
            let data = FileManager.default.contents(atPath: path)
        else {
            throw Failure(description: "\(path): not a readable regular file of at most \(maximumSize) bytes")
        }
        let text = String(decoding: data, as: UTF8.self)
        do {
            try validate(text)
        } catch let failure as Failure {
            throw Failure(description: "\(path): \(failure.description)")
        }
        try NFTables.apply(text)
        return true
    }
}
