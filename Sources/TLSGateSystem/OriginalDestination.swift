import CTLSGateLinux
import NIOCore

#if canImport(Glibc)
import Glibc
#endif

/// Where a redirected connection was going before the firewall sent it to us.
public enum OriginalDestination {
    /// Why the original destination could not be read.
    public struct Failure: Error, Sendable, CustomStringConvertible {
        public let errno: Int32
        public let description: String
    }

    /// Reads `SO_ORIGINAL_DST` (IPv4, also for IPv4-mapped connections on a dual-stack
    /// socket) or `IP6T_SO_ORIGINAL_DST` (IPv6) from an accepted connection.
    ///
    /// A connection that was not NATed has no entry, or (when conntrack tracked it) an
    /// entry whose original destination is the socket's own local address; callers tell
    /// the two apart by comparing with `channel.localAddress`.
    ///
    /// `done` runs on the channel's event loop (at once when called there): one future per
    /// connection, not a chain of three.
    public static func read(from channel: Channel, _ done: @escaping @Sendable (Result<SocketAddress, Failure>) -> Void) {
        guard let provider = channel as? SocketOptionProvider else {
            done(.failure(Failure(errno: ENOTSOCK, description: "not a socket channel")))
            return
        }
        let useIPv6: Bool
        switch channel.localAddress {
        case .v6(let address):
            useIPv6 = !Self.isIPv4Mapped(address.address.sin6_addr)
        default:
            useIPv6 = false
        }
        if useIPv6 {
            let future: EventLoopFuture<sockaddr_in6> = provider.unsafeGetSocketOption(
                level: SocketOptionLevel(tg_linux_sol_ipv6()),
                name: SocketOptionName(tg_linux_ip6t_so_original_dst()))
            future.whenComplete { result in
                done(result.map { SocketAddress($0, host: "") }.mapError(Self.failure))
            }
        } else {
            let future: EventLoopFuture<sockaddr_in> = provider.unsafeGetSocketOption(
                level: SocketOptionLevel(tg_linux_sol_ip()),
                name: SocketOptionName(tg_linux_so_original_dst()))
            future.whenComplete { result in
                done(result.map { SocketAddress($0, host: "") }.mapError(Self.failure))
            }
        }
    }

    private static func failure(_ error: Error) -> Failure {
        if let io = error as? IOError {
            return Failure(errno: io.errnoCode, description: "cannot read the original destination: \(io)")
        }
        return Failure(errno: 0, description: "cannot read the original destination: \(error)")
    }

    static func isIPv4Mapped(_ address: in6_addr) -> Bool {
        withUnsafeBytes(of: address) { bytes in
            bytes[0..<10].allSatisfy { $0 == 0 } && bytes[10] == 0xff && bytes[11] == 0xff
        }
    }
}
