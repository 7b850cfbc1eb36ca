#if canImport(Glibc)
import Glibc
#endif

/// The addresses of this host's interfaces, as text ("198.18.0.1", "2001:2::1"), so a
/// worker can refuse a connection whose destination is the gateway itself.
public enum LocalAddresses {
    public static func current() -> Set<String> {
        var result: Set<String> = []
        var head: UnsafeMutablePointer<ifaddrs>? = nil
        guard getifaddrs(&head) == 0 else { return result }
        defer { freeifaddrs(head) }
        var cursor = head
        while let entry = cursor {
            defer { cursor = entry.pointee.ifa_next }
            guard let sa = entry.pointee.ifa_addr else { continue }
            if let text = Self.text(of: sa) { result.insert(text) }
        }
        return result
    }

    static func text(of sa: UnsafeMutablePointer<sockaddr>) -> String? {
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
        switch Int32(sa.pointee.sa_family) {
        case AF_INET:
            return sa.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { sin in
                var addr = sin.pointee.sin_addr
                guard inet_ntop(AF_INET, &addr, &buffer, socklen_t(buffer.count)) != nil else { return nil }
                return buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
            }
        case AF_INET6:
            return sa.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { sin6 in
                var addr = sin6.pointee.sin6_addr
                guard inet_ntop(AF_INET6, &addr, &buffer, socklen_t(buffer.count)) != nil else { return nil }
                return buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
            }
        default:
            return nil
        }
    }
}
