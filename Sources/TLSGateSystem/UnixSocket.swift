import CTLSGateLinux

#if canImport(Glibc)
import Glibc
#endif

/// Unix stream sockets by path: the supervisor's control socket and its clients
/// (`tlsgate status`, `tlsgate reload`).
public enum UnixSocket {
    /// Why a control socket cannot be made.
    public enum ListenError: Error, Sendable, CustomStringConvertible {
        /// Something answers on the path: another gateway runs with this control socket.
        case inUse(String)
        case system(SystemError)

        public var description: String {
            switch self {
            case .inUse(let path):
                return "another tlsgate answers on the control socket \(path): stop it first, or give this one another [admin] control_socket"
            case .system(let error):
                return "\(error)"
            }
        }
    }

    /// Listens on `path` with mode 0600, owned by `owner` (uid, gid) when given (a root
    /// start creates it for the account it becomes), non-blocking and close-on-exec. A
    /// stale socket file (nothing answers on it: a killed gateway's) is replaced; a live
    /// one is refused. A missing parent folder is created (0755, owned by `owner`).
    public static func listen(path: String, owner: (uid: UInt32, gid: UInt32)? = nil) throws(ListenError) -> Int32 {
        let folder = path.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
        if !folder.isEmpty, access(folder, F_OK) != 0 {
            guard mkdir(folder, 0o755) == 0 || errno == EEXIST else { throw .system(SystemError("mkdir \(folder)")) }
            if let owner { _ = chown(folder, owner.uid, owner.gid) }
        }
        var info = stat()
        if lstat(path, &info) == 0 {
            guard (info.st_mode & S_IFMT) == S_IFSOCK else {
                throw .system(SystemError("\(path) exists and is not a socket: remove it or pick another [admin] control_socket", errno: 0))
            }
            if let probe = try? connect(path: path) {
                close(probe)
                throw .inUse(path)
            }
            guard unlink(path) == 0 || errno == ENOENT else { throw .system(SystemError("remove the stale socket \(path)")) }
        }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { throw .system(SystemError("socket(AF_UNIX)")) }
        // Never a moment with looser permissions than 0600.
        let previous = umask(0o177)
        let bound = withAddress(path) { bind(fd, $0, $1) }
        let bindErrno = errno
        umask(previous)
        guard bound == 0 else {
            close(fd)
            throw .system(SystemError("bind \(path)", errno: bindErrno))
        }
        if let owner, chown(path, owner.uid, owner.gid) != 0 {
            let error = SystemError("chown \(path)")
            close(fd)
            unlink(path)
            throw .system(error)
        }
        guard chmod(path, 0o600) == 0, Glibc.listen(fd, 16) == 0 else {
            let error = SystemError("listen \(path)")
            close(fd)
            unlink(path)
            throw .system(error)
        }
        return fd
    }

    /// A connected, blocking socket to `path`.
    public static func connect(path: String) throws(SystemError) -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SystemError("socket(AF_UNIX)") }
        var result: Int32
        repeat {
            result = withAddress(path) { Glibc.connect(fd, $0, $1) }
        } while result != 0 && errno == EINTR
        guard result == 0 else {
            let error = SystemError("connect \(path)")
            close(fd)
            throw error
        }
        return fd
    }

    /// A connection waiting on a listening socket, non-blocking and close-on-exec; nil when
    /// none is waiting.
    public static func accept(_ listener: Int32) -> Int32? {
        var fd: Int32
        repeat {
            fd = Glibc.accept(listener, nil, nil)
        } while fd < 0 && errno == EINTR
        guard fd >= 0 else { return nil }
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        return fd
    }

    /// The uid of the process at the other end of a connected Unix socket.
    public static func peerUID(_ fd: Int32) -> UInt32? {
        var uid: UInt32 = 0
        return tg_linux_peer_uid(fd, &uid) == 0 ? uid : nil
    }

    private static func withAddress<T>(_ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) -> T) -> T {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8.prefix(MemoryLayout.size(ofValue: address.sun_path) - 1))
        withUnsafeMutableBytes(of: &address.sun_path) { target in
            for (index, byte) in bytes.enumerated() { target[index] = byte }
        }
        return withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
    }
}
