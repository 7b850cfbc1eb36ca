import CTLSGateLinux

#if canImport(Glibc)
import Glibc
#endif

/// The workers' seccomp allow-list (libseccomp; the list is in `CTLSGateLinux/shim.c`).
public enum SyscallFilter {
    /// Installs the filter on every thread of this process. After it, a syscall outside the
    /// list (exec, fork, kill or ptrace of another process, opening a file for writing…)
    /// kills the process with SIGSYS.
    public static func installForWorker() throws(SystemError) {
        if tg_linux_seccomp_install_worker() != 0 {
            throw SystemError("install the seccomp filter")
        }
    }

    /// For `tlsgate seccomp-selftest` only: makes a syscall the filter forbids. Returns only
    /// if the filter is not in force.
    public static func makeForbiddenCall() -> Int32 {
        tg_linux_seccomp_selftest_forbidden_call()
    }
}
