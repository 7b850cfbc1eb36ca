/// Turns the `[match] hosts` of every policy into destination addresses, deciding who owns
/// an address two policies claim. Pure: the DNS lookup is passed in, so this is tested
/// without a resolver, and the same answer comes out of the same inputs whatever order the
/// policies arrive in.
///
/// The rules, for policies with the same match port (only those compete for a connection):
/// - literal `networks` are never taken away (`check` already refuses two policies whose
///   networks overlap on one port);
/// - an address a host resolves to that lies in another policy's literal networks stays
///   with that policy (the more specific, operator-written rule wins);
/// - an address two policies' hosts both resolve to goes to the policy whose name sorts
///   first;
/// and every address left to another policy is reported, never dropped silently.
public enum HostClaims {
    /// An address a policy's host resolved to but that another policy keeps.
    public struct Conflict: Sendable, Equatable, CustomStringConvertible {
        public let policy: String
        public let host: String
        public let address: IPAddress
        public let owner: String
        /// Why the owner keeps it.
        public let because: String

        public var description: String {
            "policy \(policy): host \(host) resolves to \(address), which \(because); it stays with policy \(owner)"
        }
    }

    /// `sources` with the addresses of their hosts added to their networks (as /32 or
    /// /128), in the order given; plus the conflicts found. `addresses(host)` returns the
    /// host's current (or last known) addresses, empty when it has none.
    public static func resolve(_ sources: [Policy], addresses: (String) -> [IPAddress]) -> (
        policies: [Policy], conflicts: [Conflict]
    ) {
        var conflicts: [Conflict] = []
        // Who got what from hosts so far, by match port; filled in name order.
        var claimedByHosts: [UInt16: [(address: IPAddress, policy: String)]] = [:]
        var resolved: [String: Policy] = [:]
        let byName = sources.sorted { $0.name < $1.name }
        for policy in byName {
            guard !policy.match.hosts.isEmpty else {
                resolved[policy.name] = policy
                continue
            }
            var networks = policy.match.networks
            let rivals = byName.filter { $0.name != policy.name && $0.match.port == policy.match.port }
            for host in policy.match.hosts {
                for address in addresses(host) {
                    if networks.contains(where: { $0.contains(address) }) { continue }
                    if let owner = rivals.first(where: { rival in rival.match.networks.contains { $0.contains(address) } }),
                        let network = owner.match.networks.first(where: { $0.contains(address) })
                    {
                        conflicts.append(
                            Conflict(
                                policy: policy.name, host: host, address: address, owner: owner.name,
                                because: "is in policy \(owner.name)'s networks \(network) on port \(policy.match.port)"))
                        continue
                    }
                    if let earlier = claimedByHosts[policy.match.port]?.first(where: { $0.address == address }) {
                        conflicts.append(
                            Conflict(
                                policy: policy.name, host: host, address: address, owner: earlier.policy,
                                because: "a host of policy \(earlier.policy) also resolves to on port \(policy.match.port) (the first policy by name keeps it)"))
                        continue
                    }
                    guard let network = try? IPNetwork(address: address, prefixLength: address.isIPv4 ? 32 : 128) else {
                        continue
                    }
                    networks.append(network)
                    claimedByHosts[policy.match.port, default: []].append((address, policy.name))
                }
            }
            resolved[policy.name] = policy.withNetworks(networks)
        }
        return (sources.compactMap { resolved[$0.name] }, conflicts)
    }
}

extension Policy {
    /// The same policy with other destination networks (its resolved hosts added).
    public func withNetworks(_ networks: [IPNetwork]) -> Policy {
        Policy(
            name: name, sourcePath: sourcePath,
            match: MatchRule(networks: networks, hosts: match.hosts, port: match.port),
            upstream: upstream, tls: tls, limits: limits, firewall: firewall)
    }
}
