import Foundation
import Testing

@testable import TLSGateSystem

/// Serialized: the cases move descriptors of the test process itself onto fixed numbers
/// (200, 201, 250); run side by side, two cases took each other's descriptors, `cat` saw
/// "Bad file descriptor" and a write to a pipe with no reader killed the whole run with
/// SIGPIPE (CI, once in about four runs).
@Suite(.serialized) struct ProcessSpawnerTests {
    /// Waits (bounded) for `pid` and returns its exit.
    func wait(_ pid: pid_t) -> ProcessSpawner.Exit? {
        for _ in 0..<500 {
            var status: Int32 = 0
            if waitpid(pid, &status, WNOHANG) == pid {
                return status & 0x7f == 0 ? .exited((status >> 8) & 0xff) : .signaled(status & 0x7f)
            }
            usleep(10_000)
        }
        kill(pid, SIGKILL)
        return nil
    }

    /// Moves `fd` to exactly `number` (close-on-exec), closing the original.
    func move(_ fd: Int32, to number: Int32) -> Int32 {
        #expect(dup2(fd, number) == number)
        _ = fcntl(number, F_SETFD, FD_CLOEXEC)
        close(fd)
        return number
    }

    var pipes: (inRead: Int32, inWrite: Int32, outRead: Int32, outWrite: Int32) {
        let a = try! ProcessSpawner.makePipe()
        let b = try! ProcessSpawner.makePipe()
        return (a.read, a.write, b.read, b.write)
    }

    /// The child copies descriptor 4 to descriptor 3: the bytes arrive only if each
    /// descriptor landed where it belongs.
    ///
    /// Only high numbers: this moves descriptors of the test process itself, and low ones
    /// (3, 4, 5) belong to the test harness or to tests running in parallel (clobbering
    /// them killed a run with SIGPIPE). The swaps onto 3 and 4 are exercised by every
    /// gateway integration test, where the supervisor spawns its workers.
    @Test(arguments: [(Int32(200), Int32(201)), (201, 200), (250, 200), (200, 250)])
    func descriptorsLandWhateverTheirNumbers(output outNumber: Int32, input inNumber: Int32) throws {
        for number in [outNumber, inNumber] {
            try #require(fcntl(number, F_GETFD) == -1, "descriptor \(number) is in use in the test process")
        }
        // Above the temporary range the spawner once used (200 + i), and the swaps.
        let p = pipes
        // Park everything out of the way first, so that the moves below overwrite nothing.
        let parked = [p.inRead, p.inWrite, p.outRead, p.outWrite].map { fcntl($0, F_DUPFD_CLOEXEC, 300) }
        for fd in [p.inRead, p.inWrite, p.outRead, p.outWrite] { close(fd) }
        let input = move(parked[0], to: inNumber)
        let output = move(parked[3], to: outNumber)
        let pid = try ProcessSpawner.spawn(
            path: "/bin/sh", arguments: ["sh", "-c", "cat <&4 >&3"], environment: ["PATH=/usr/bin:/bin"],
            descriptors: [output, input])
        close(input)
        close(output)
        let message = Array("descriptor test \(outNumber) \(inNumber)\n".utf8)
        #expect(write(parked[1], message, message.count) == message.count)
        close(parked[1])
        var got: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 256)
        while true {
            let n = read(parked[2], &buffer, buffer.count)
            if n <= 0 { break }
            got += buffer[0..<n]
        }
        close(parked[2])
        #expect(wait(pid) == .exited(0))
        #expect(got == message)
    }
}

/// Spawning under another account (`account:`), the primitive a separate worker account
/// needs. Root only: changing the uid needs CAP_SETUID.
@Suite(.enabled(if: getuid() == 0, "needs root (CAP_SETUID) to start a child as another account"))
struct ProcessSpawnerAccountTests {
    static let nobody: (uid: uid_t, gid: gid_t) = (65534, 65534)

    /// Runs `script` under /bin/sh as `nobody`, its output on descriptor 3; returns the output and exit.
    func run(_ script: String) throws -> (output: String, exit: ProcessSpawner.Exit?) {
        let out = try ProcessSpawner.makePipe()
        let pid = try ProcessSpawner.spawn(
            path: "/bin/sh", arguments: ["sh", "-c", script], environment: ["PATH=/usr/bin:/bin"],
            descriptors: [out.write], account: Self.nobody)
        close(out.write)
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        var pollfd = pollfd(fd: out.read, events: Int16(POLLIN), revents: 0)
        for _ in 0..<100 {  // at most ~10 s
            guard poll(&pollfd, 1, 100) >= 0 else { break }
            if pollfd.revents == 0 { continue }
            let n = read(out.read, &buffer, buffer.count)
            if n <= 0 { break }
            bytes += buffer[0..<n]
        }
        close(out.read)
        var exit: ProcessSpawner.Exit?
        for _ in 0..<500 {
            var status: Int32 = 0
            if waitpid(pid, &status, WNOHANG) == pid {
                exit = status & 0x7f == 0 ? .exited((status >> 8) & 0xff) : .signaled(status & 0x7f)
                break
            }
            usleep(10_000)
        }
        if exit == nil { kill(pid, SIGKILL) }
        return (String(decoding: bytes, as: UTF8.self), exit)
    }

    @Test func childRunsAsTheAccountWithNoCapabilityAndNoGroup() throws {
        let result = try run("echo \"$(id -u) $(id -g) $(id -G)\" >&3; grep -E '^Cap(Prm|Eff|Amb):' /proc/self/status >&3")
        #expect(result.exit == .exited(0))
        let lines = result.output.split(separator: "\n").map(String.init)
        #expect(lines.first == "65534 65534 65534", "\(result.output)")
        for name in ["CapPrm", "CapEff", "CapAmb"] {
            #expect(lines.contains("\(name):\t0000000000000000"), "\(result.output)")
        }
    }

    @Test func childCannotSignalOrReadAsTheSpawner() throws {
        let secret = FileManager.default.temporaryDirectory.appendingPathComponent("tlsgate-spawn-secret-\(getpid())").path
        #expect(FileManager.default.createFile(atPath: secret, contents: Data("key".utf8), attributes: [.posixPermissions: 0o600]))
        defer { unlink(secret) }
        let result = try run(
            "kill -0 \(getpid()) 2>/dev/null && echo signal-ok >&3 || echo signal-refused >&3; "
                + "cat '\(secret)' >/dev/null 2>&1 && echo read-ok >&3 || echo read-refused >&3")
        #expect(result.exit == .exited(0))
        #expect(result.output == "signal-refused\nread-refused\n", "\(result.output)")
    }

    @Test func aMissingProgramIsAnErrorNotAChild() {
        #expect(throws: SystemError.self) {
            _ = try ProcessSpawner.spawn(
                path: "/nonexistent/tlsgate", arguments: ["x"], environment: [], descriptors: [], account: Self.nobody)
        }
    }
}
