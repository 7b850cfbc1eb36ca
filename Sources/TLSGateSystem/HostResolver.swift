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
}
