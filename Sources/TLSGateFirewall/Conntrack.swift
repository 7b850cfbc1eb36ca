/// Forgets the connection-tracking entries an earlier run of the gateway left behind.
///
/// REDIRECT is decided once per connection, by the nat rule that sees its first packet,
/// and kept in the kernel's conntrack entry for the flow. When the gateway stops or dies,
/// entries of flows it had redirected stay for their timeout, still pointing at the dead
/// run's listen port. An entry closed by a reset from the gateway's side (a connection cut
/// mid-transfer by the kill) stays 10 s, and a new SYN from the same client port is
/// matched to it, keeps its old NAT and is refused by the kernel at the dead port
/// (`test_fail_closed.py`: 2 of 4 such ports refused by the next run without this, 0 with
/// it; the chaos scenarios saw it as refusals in a new gateway's first seconds). So at start, before its first rules, the gateway deletes the entries that
/// only a redirection to its own listen ports makes: destination-NATed TCP flows to a
/// policy's destinations and match port. Nothing of the new run exists yet; a flow of the
/// dead run is gone anyway.
///
/// With the `conntrack` tool (package conntrack), like nftables with `nft`: one call per
/// destination network and port, bounded.
public enum Conntrack {
    public static let maximumCalls = 256

    public static var conntrackPath: String? {
        Tool.find(["/usr/sbin/conntrack", "/sbin/conntrack", "/usr/bin/conntrack"])
    }

    /// The `conntrack -D` argument lists for a plan's intercepted entries (NAT modes only:
    /// TPROXY keeps no NAT in conntrack). Empty for the tproxy mode.
    public static func deletions(for plan: InterceptionPlan) -> [[String]] {
        guard plan.mode != .tproxy else { return [] }
        var result: [[String]] = []
        var seen = Set<[String]>()
        for entry in plan.entries {
            for (family, networks) in [("ipv4", entry.ipv4), ("ipv6", entry.ipv6)] {
                for network in networks {
                    guard let (address, mask) = addressAndMask(network, v6: family == "ipv6") else { continue }
                    let arguments = [
                        "-D", "-f", family, "-p", "tcp", "--orig-dst", address, "--mask-dst", mask,
                        "--orig-port-dst", String(entry.matchPort), "--dst-nat",
                    ]
                    if seen.insert(arguments).inserted { result.append(arguments) }
                }
            }
        }
        return result
    }

    /// Runs the deletions; returns how many entries were deleted and what went wrong
    /// (no tool, a failed call, too many calls). Never throws: this is hygiene, not safety
    /// (the guard and the new rules do not depend on it).
    public static func forgetRedirectedFlows(for plan: InterceptionPlan) -> (deleted: Int, problems: [String]) {
        let calls = deletions(for: plan)
        guard !calls.isEmpty else { return (0, []) }
        guard let tool = conntrackPath else {
            return (0, ["the conntrack tool is not installed (package conntrack): flows redirected by an earlier run are not cleared"])
        }
        var deleted = 0
        var problems: [String] = []
        if calls.count > maximumCalls {
            problems.append("\(calls.count) destination networks: only the first \(maximumCalls) are cleared")
        }
        for arguments in calls.prefix(maximumCalls) {
            let result: Tool.Result
            do {
                result = try Tool.run(tool, arguments)
            } catch {
                problems.append("cannot run \(tool): \(error)")
                break
            }
            // Status 1 with "0 flow entries have been deleted" is the usual answer.
            if let count = deletedCount(result.stderr) {
                deleted += count
            } else if result.status != 0 {
                problems.append("conntrack \(arguments.joined(separator: " ")): \(result.message)")
            }
        }
        return (deleted, problems)
    }

    /// The N of "N flow entries have been deleted." in conntrack's message.
    static func deletedCount(_ message: String) -> Int? {
        guard let range = message.firstRange(of: " flow entries have been deleted") else { return nil }
        let digits = message[..<range.lowerBound].reversed().prefix(while: \.isNumber)
        return Int(String(digits.reversed()))
    }

    /// "198.51.100.0/24" → ("198.51.100.0", "255.255.255.0"); a bare address is a host.
    static func addressAndMask(_ network: String, v6: Bool) -> (String, String)? {
        let parts = network.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        guard let address = parts.first, !address.isEmpty else { return nil }
        let bits = v6 ? 128 : 32
        let prefix = parts.count == 2 ? Int(parts[1]) : bits
        guard let prefix, (0...bits).contains(prefix) else { return nil }
        if v6 {
            let groups = (0..<8).map { group -> String in
                let ones = max(0, min(16, prefix - group * 16))
                let value = ones == 0 ? 0 : (0xffff << (16 - ones)) & 0xffff
                return String(value, radix: 16)
            }
            return (String(address), groups.joined(separator: ":"))
        }
        let octets = (0..<4).map { octet -> String in
            let ones = max(0, min(8, prefix - octet * 8))
            return String(ones == 0 ? 0 : (0xff << (8 - ones)) & 0xff)
        }
        return (String(address), octets.joined(separator: "."))
    }
}
