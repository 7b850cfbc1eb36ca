import CTLSGateLinux

#if canImport(Glibc)
import Glibc
#endif

/// A listening TCP socket the supervisor owns and its workers inherit. The supervisor
/// keeps its copy open for the gateway's whole life, so connections queue in the kernel
/// while a worker restarts instead of being refused.
public final class ListenSocket: Sendable {
    public let descriptor: Int32
    public let port: UInt16
    public let address: String

    /// The accept queue of a policy's socket (the kernel caps it at `net.core.somaxconn`).
    public static let backlog: Int32 = 4096

    /// Binds `address` on port `port` (0: the kernel picks) and listens.
    /// - Parameters:
    ///   - transparent: sets IP_TRANSPARENT / IPV6_TRANSPARENT for TPROXY (needs CAP_NET_ADMIN).
    public init(address: String, port: UInt16 = 0, transparent: Bool = false, backlog: Int32 = ListenSocket.backlog) throws(SystemError) {
        var v6 = in6_addr()
        var v4 = in_addr()
        let isV6 = inet_pton(AF_INET6, address, &v6) == 1
        guard isV6 || inet_pton(AF_INET, address, &v4) == 1 else {
            throw SystemError("listen address \"\(address)\" is not an IP address", errno: EINVAL)
        }
        let family = isV6 ? AF_INET6 : AF_INET
        let fd = try syscall("socket") { socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) }
        var ok = false
        defer { if !ok { close(fd) } }
        var one: Int32 = 1
        var zero: Int32 = 0
        let size = socklen_t(MemoryLayout<Int32>.size)
        try syscall("setsockopt SO_REUSEADDR") { setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, size) }
        if isV6 {
            // "::" also takes IPv4 connections (as ::ffff:a.b.c.d).
            try syscall("setsockopt IPV6_V6ONLY") { setsockopt(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &zero, size) }
        }
        if transparent {
            if isV6 {
                try syscall("setsockopt IPV6_TRANSPARENT (needs CAP_NET_ADMIN)") {
                    setsockopt(fd, tg_linux_sol_ipv6(), tg_linux_ipv6_transparent(), &one, size)
                }
            }
            try syscall("setsockopt IP_TRANSPARENT (needs CAP_NET_ADMIN)") {
                setsockopt(fd, tg_linux_sol_ip(), tg_linux_ip_transparent(), &one, size)
            }
        }
        if isV6 {
            var sa = sockaddr_in6()
            sa.sin6_family = sa_family_t(AF_INET6)
            sa.sin6_port = port.bigEndian
            sa.sin6_addr = v6
            try syscall("bind [\(address)]:\(port)") {
                withUnsafePointer(to: &sa) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size))
                    }
                }
            }
        } else {
            var sa = sockaddr_in()
            sa.sin_family = sa_family_t(AF_INET)
            sa.sin_port = port.bigEndian
            sa.sin_addr = v4
            try syscall("bind \(address):\(port)") {
                withUnsafePointer(to: &sa) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                    }
                }
            }
        }
        try syscall("listen") { listen(fd, backlog) }
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        try syscall("getsockname") {
            withUnsafeMutablePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
            }
        }
        let boundPort: UInt16 = withUnsafePointer(to: &storage) { pointer in
            if isV6 {
                return pointer.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { UInt16(bigEndian: $0.pointee.sin6_port) }
            }
            return pointer.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { UInt16(bigEndian: $0.pointee.sin_port) }
        }
        self.descriptor = fd
        self.port = boundPort
        self.address = address
        ok = true
    }

    deinit {
        close(descriptor)
    }

    /// Sets the accept queue of an already listening socket (`listen` again only changes
    /// it). NIO's `withBoundSocket` listens with its own default of 128, which replaced the
    /// supervisor's 4096 in every worker: a burst of more than 128 connects overflowed the
    /// queue (handshakes dropped, SYNs retried after 1 s, 3 s, and a few clients reset).
    public static func setBacklog(of descriptor: Int32, to backlog: Int32 = ListenSocket.backlog) throws(SystemError) {
        try syscall("listen") { listen(descriptor, backlog) }
    }
}
