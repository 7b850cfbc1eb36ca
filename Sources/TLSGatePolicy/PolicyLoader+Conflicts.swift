extension PolicyLoader {
    /// Two policies may not claim the same destination on the same match port: the
    /// firewall could only send the connection to one of them. Each conflict is reported
    /// on both files, each naming the other.
    static func conflictDiagnostics(_ files: [LoadedFile]) -> [Diagnostic] {
        var diagnostics: [Diagnostic] = []
        for (i, a) in files.enumerated() {
            guard let policyA = a.policy else { continue }
            for b in files[(i + 1)...] {
                guard let policyB = b.policy, policyA.match.port == policyB.match.port else { continue }
                let port = policyA.match.port
                for (indexA, networkA) in policyA.match.networks.enumerated() {
                    for (indexB, networkB) in policyB.match.networks.enumerated() where networkA.overlaps(networkB) {
                        diagnostics.append(
                            .error(
                                a.path, a.lines.networks[indexA],
                                "networks: \(networkA) overlaps \(networkB) of policy \(quoted(policyB.name)) (\(b.path)) on port \(port)"
                            ))
                        diagnostics.append(
                            .error(
                                b.path, b.lines.networks[indexB],
                                "networks: \(networkB) overlaps \(networkA) of policy \(quoted(policyA.name)) (\(a.path)) on port \(port)"
                            ))
                    }
                }
                for (indexA, hostA) in policyA.match.hosts.enumerated() {
                    for (indexB, hostB) in policyB.match.hosts.enumerated() where hostA == hostB {
                        diagnostics.append(
                            .error(
                                a.path, a.lines.hosts[indexA],
                                "hosts: \(quoted(hostA)) is also claimed by policy \(quoted(policyB.name)) (\(b.path)) on port \(port)"
                            ))
                        diagnostics.append(
                            .error(
                                b.path, b.lines.hosts[indexB],
                                "hosts: \(quoted(hostB)) is also claimed by policy \(quoted(policyA.name)) (\(a.path)) on port \(port)"
                            ))
                    }
                }
            }
        }
        return diagnostics
    }
}
