#if canImport(Glibc)
import Glibc
#endif

/// Resolves host names to addresses with the system resolver (getaddrinfo).
public enum HostResolver {
    /// The IPv4 and IPv6 addresses of `name`, as text, sorted; throws when it has none.
    public static func addresses(of name: String) throws(SystemError) -> [String] {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var head: UnsafeMutablePointer<addrinfo>? = nil
        let rc = getaddrinfo(name, nil, &hints, &head)
        guard rc == 0 else {
            let message = String(cString: gai_strerror(rc))
            throw SystemError("resolve \(name): \(message)", errno: 0)
        }
        defer { freeaddrinfo(head) }
        var result: Set<String> = []
        var cursor = head
        while let entry = cursor {
            defer { cursor = entry.pointee.ai_next }
            if let sa = entry.pointee.ai_addr, let text = LocalAddresses.text(of: sa) { result.insert(text) }
        }
        return result.sorted()
    }

    /// Where a name's addresses came from, and for how long DNS says they hold.
    public struct Resolution: Sendable, Equatable {
        public enum Source: String, Sendable { case hosts, dns, system }
        public var addresses: [String]
        /// The TTL in seconds when DNS gave one; nil for /etc/hosts and the system resolver.
        public var ttl: UInt32?
        public var source: Source
    }

    /// `name`'s addresses the way the gateway refreshes them: /etc/hosts first (as
    /// `hosts: files dns`), then the nameservers of /etc/resolv.conf with the stub resolver
    /// (which gives the TTL), and when that fails, the system resolver (getaddrinfo:
    /// search domains, nsswitch, TCP). Throws with both errors when all fail.
    public static func resolve(_ name: String) throws(SystemError) -> Resolution {
        let listed = HostsFile.systemAddresses(of: name)
        if !listed.isEmpty { return Resolution(addresses: listed, ttl: nil, source: .hosts) }
        let dnsError: SystemError
        do {
            let answer = try DNSStubResolver.resolve(name)
            return Resolution(addresses: answer.addresses, ttl: answer.ttl, source: .dns)
        } catch {
            dnsError = error
        }
        do {
            return Resolution(addresses: try addresses(of: name), ttl: nil, source: .system)
        } catch {
            throw SystemError("\(dnsError); system resolver: \(error)", errno: 0)
        }
    }
}
