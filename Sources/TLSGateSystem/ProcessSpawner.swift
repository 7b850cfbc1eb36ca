import CTLSGateLinux

#if canImport(Glibc)
import Glibc
#endif

/// Starts child processes as a fresh exec with an explicit set of descriptors.
public enum ProcessSpawner {
    /// Starts `path` with `arguments` (argv[0] included) and `descriptors` at 3, 4, …
    /// (whatever numbers they have here). Every other descriptor above 2 is closed in the
    /// child, and it starts with an empty ambient capability set: no capability at all
    /// unless it runs as root.
    ///
    /// With `account`, the child runs as that uid and gid with no supplementary group (the
    /// caller needs CAP_SETUID and CAP_SETGID, or root); it still holds no capability.
    public static func spawn(
        path: String, arguments: [String], environment: [String], descriptors: [Int32],
        account: (uid: uid_t, gid: gid_t)? = nil
    ) throws(SystemError) -> pid_t {
        let argv = arguments.map { strdup($0) } + [nil]
        let envp = environment.map { strdup($0) } + [nil]
        defer {
            for p in argv { free(p) }
            for p in envp { free(p) }
        }
        let pid = descriptors.withUnsafeBufferPointer { fds in
            if let account {
                return tg_linux_spawn_as(path, argv, envp, fds.baseAddress, Int32(fds.count), account.uid, account.gid)
            }
            return tg_linux_spawn(path, argv, envp, fds.baseAddress, Int32(fds.count))
        }
        if pid < 0 { throw SystemError("spawn \(path)") }
        return pid
    }

    /// The path of the running executable, for re-exec.
    public static func currentExecutable() -> String {
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard n > 0 else { return CommandLine.arguments[0] }
        return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// A pipe whose ends are close-on-exec (the spawner dup2s the child's end explicitly).
    public static func makePipe() throws(SystemError) -> (read: Int32, write: Int32) {
        var fds: [Int32] = [0, 0]
        try syscall("pipe2") { tg_linux_pipe_cloexec(&fds) }
        return (fds[0], fds[1])
    }

    /// A connected pair of Unix stream sockets, both close-on-exec: the supervisor's
    /// two-way control channel with a worker (the policy one way, reports the other).
    public static func makeSocketPair() throws(SystemError) -> (parent: Int32, child: Int32) {
        var fds: [Int32] = [0, 0]
        try syscall("socketpair") { tg_linux_socketpair_cloexec(&fds) }
        return (fds[0], fds[1])
    }

    public enum Exit: Sendable, Equatable, CustomStringConvertible {
        case exited(Int32)
        case signaled(Int32)

        public var description: String {
            switch self {
            case .exited(let code): return "exit status \(code)"
            case .signaled(let signal): return "killed by signal \(signal)"
            }
        }
    }

    /// Reaps every child that has exited, without blocking.
    public static func reapAll() -> [(pid: pid_t, exit: Exit)] {
        var result: [(pid_t, Exit)] = []
        while true {
            var status: Int32 = 0
            let pid = waitpid(-1, &status, WNOHANG)
            if pid <= 0 { break }
            // WIFEXITED / WTERMSIG are macros; decode the status word by hand.
            let termSignal = status & 0x7f
            if termSignal == 0 {
                result.append((pid, .exited((status >> 8) & 0xff)))
            } else if termSignal != 0x7f {
                result.append((pid, .signaled(termSignal)))
            }
        }
        return result
    }
}
