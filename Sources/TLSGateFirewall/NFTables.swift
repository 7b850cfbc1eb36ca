import FoundationEssentials

#if canImport(Glibc)
import Glibc
#endif

/// Applies and removes the gateway's table with the `nft` tool.
///
/// Why the tool and not libnftables: `nft -f -` is the same parser and the same single
/// netlink transaction libnftables would give, the script can be printed and replayed by
/// an operator (`tlsgate rules`), and the gateway links no extra C library for it.
public enum NFTables {
    public struct Failure: Error, Sendable, CustomStringConvertible {
        public let description: String
    }

    public static var nftPath: String {
        Tool.find(["/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft"]) ?? "nft"
    }

    /// Applies `script` (from `Ruleset.script`) as one transaction.
    public static func apply(_ script: String) throws {
        try run(["-f", "-"], input: script)
    }

    /// What each of the gateway's tables holds now; a missing table has no entry.
    public static func existingTables() -> [String: Ruleset.TableContents] {
        var result: [String: Ruleset.TableContents] = [:]
        for table in [Ruleset.tableName, Ruleset.guardTableName] {
            if let listing = try? run(["list", "table", Ruleset.tableFamily, table], input: nil, quiet: true) {
                result[table] = Ruleset.TableContents.parse(listing)
            }
        }
        return result
    }

    /// Brings both tables to `plan` in one transaction: in place when they exist (no hook
    /// is unregistered, see `Ruleset`); if nft refuses that (a table left by another mode
    /// or version), by deleting and re-creating them. Returns the script that was applied.
    @discardableResult
    public static func apply(plan: InterceptionPlan) throws -> (script: String, replaced: Bool) {
        let script = Ruleset.script(for: plan, existing: existingTables())
        do {
            try apply(script)
            return (script, false)
        } catch {
            let replacement = Ruleset.replacementScript(for: plan)
            try apply(replacement)
            return (replacement, true)
        }
    }

    /// Deletes the interception table, and the fail-closed guard with `includingGuard`;
    /// missing tables are not an error. One transaction.
    public static func deleteTables(includingGuard: Bool) throws {
        try run(["-f", "-"], input: Ruleset.removalScript(includingGuard: includingGuard))
    }

    /// Whether the table exists now (default: the interception table).
    public static func tableExists(_ name: String = Ruleset.tableName) -> Bool {
        (try? run(["list", "table", Ruleset.tableFamily, name], input: nil, quiet: true)) != nil
    }

    @discardableResult
    static func run(_ arguments: [String], input: String?, quiet: Bool = false) throws -> String {
        let result: Tool.Result
        do {
            result = try Tool.run(nftPath, arguments, input: input, captureStdout: true)
        } catch {
            throw Failure(description: "cannot run \(nftPath): \(error) (install nftables)")
        }
        guard result.status == 0 else {
            throw Failure(description: "nft \(arguments.joined(separator: " ")) failed: \(result.message)")
        }
        return result.stdout
    }
}
