import ArgumentParser
import FoundationEssentials

#if canImport(Glibc)
import Glibc
#endif
import TLSGateSystem

/// `tlsgate seccomp-selftest`: a diagnostic, run by hand or by the tests, never by the
/// gateway and never reachable from the network. It demotes itself as a worker does,
/// installs the workers' syscall filter, shows that allowed calls still work, then makes
/// one forbidden call (`kill(parent, 0)`): the kernel must kill it with SIGSYS (exit
/// status 159 in a shell). Exit status 1 means the filter did not stop the call.
struct SeccompSelftestCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "seccomp-selftest",
        abstract: "Check that the workers' seccomp filter kills a forbidden syscall (diagnostic).",
        shouldDisplay: false
    )

    func run() throws {
        do {
            try Privileges.dropAllForWorker()
            try SyscallFilter.installForWorker()
        } catch {
            StandardStream.error("tlsgate seccomp-selftest: \(error)\n")
            throw ExitCode(2)
        }
        StandardStream.error("tlsgate seccomp-selftest: filter installed; calling kill(parent, 0), which must kill this process with SIGSYS\n")
        let result = SyscallFilter.makeForbiddenCall()
        StandardStream.error("tlsgate seccomp-selftest: FAILED: the forbidden call returned \(result)\n")
        throw ExitCode(1)
    }
}
