import Testing

@testable import TLSGateSystem

#if canImport(Glibc)
import Glibc
#endif

/// The runner of `nft`, `conntrack` and `ip`, driven with /bin/sh and coreutils.
struct ToolProcessTests {
    @Test func statusStdoutAndStderrComeBackApart() throws {
        let output = try ToolProcess.run(
            "/bin/sh", ["-c", "echo out; echo err >&2; exit 3"], input: nil, captureStdout: true)
        #expect(output.status == 3)
        #expect(String(decoding: output.stdout, as: UTF8.self) == "out\n")
        #expect(String(decoding: output.stderr, as: UTF8.self) == "err\n")
    }

    @Test func stdoutIsDroppedUnlessAskedFor() throws {
        let output = try ToolProcess.run("/bin/sh", ["-c", "echo out; echo err >&2"], input: nil, captureStdout: false)
        #expect(output.status == 0)
        #expect(output.stdout.isEmpty)
        #expect(String(decoding: output.stderr, as: UTF8.self) == "err\n")
    }

    /// More than a pipe holds, each way at once: input is written while output is read, so
    /// neither side waits for the other (a ruleset of many addresses is megabytes).
    @Test func largeInputAndOutputDoNotDeadlock() throws {
        let input = (0..<(3 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let output = try ToolProcess.run("/bin/sh", ["-c", "cat; cat /dev/null >&2"], input: input, captureStdout: true)
        #expect(output.status == 0)
        #expect(output.stdout == input)
    }

    /// A tool that exits without reading its input: the write fails with EPIPE; the runner
    /// neither dies of SIGPIPE nor leaves one pending for the rest of the process.
    @Test func aToolThatDoesNotReadItsInputIsNoSignal() throws {
        let input = [UInt8](repeating: 0x61, count: 1 << 20)
        let output = try ToolProcess.run("/bin/sh", ["-c", "exit 5"], input: input, captureStdout: false)
        #expect(output.status == 5)
        var pending = sigset_t()
        sigpending(&pending)
        #expect(sigismember(&pending, SIGPIPE) == 0)
    }

    @Test func emptyInputIsAnImmediateEndOfFile() throws {
        let output = try ToolProcess.run("/bin/sh", ["-c", "wc -c"], input: [], captureStdout: true)
        #expect(String(decoding: output.stdout, as: UTF8.self).trimmingPrefix(while: { $0 == " " }) == "0\n")
    }

    @Test func aSignalIsStatus128PlusItsNumber() throws {
        let output = try ToolProcess.run("/bin/sh", ["-c", "kill -TERM $$"], input: nil, captureStdout: false)
        #expect(output.status == 128 + SIGTERM)
    }

    /// No descriptor of this process above 2 reaches the tool.
    @Test func theToolInheritsNoOtherDescriptor() throws {
        let fd = open("/dev/null", O_RDONLY)  // not close-on-exec
        defer { close(fd) }
        let output = try ToolProcess.run("/bin/sh", ["-c", "ls /proc/self/fd"], input: nil, captureStdout: true)
        let fds = String(decoding: output.stdout, as: UTF8.self).split(separator: "\n").compactMap { Int($0) }
        #expect(!fds.contains(Int(fd)), "inherited: \(fds)")
    }

    @Test func aMissingToolIsAnError() {
        #expect(throws: SystemError.self) {
            try ToolProcess.run("/nonexistent/nft", [], input: nil, captureStdout: false)
        }
    }
}
