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
