import Testing

@testable import TLSGateFirewall

#if canImport(Glibc)
import Glibc
#endif

/// Saving and reading the guard file (applying it needs nft and root: test_fail_closed.py).
@Suite struct GuardFileTests {
    let plan = InterceptionPlan(
        mode: .redirect, clients: .init(ipv4: ["198.18.0.0/24"]),
        entries: [
            .init(
                name: "web", ipv4: ["203.0.113.0/24"], ipv6: [], matchPort: 80, upstreamPort: 443, listenPort: 41000,
                denyDirect: false)
        ], gatewayUID: 1)

    func folder() -> String {
        var template = Array("/tmp/tlsgate-guardfile-XXXXXX".utf8CString)
        return template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)) }
    }

    func remove(_ folder: String) {
        for name in ["guard.nft", "guard.nft.tmp", "link", "fifo", "big"] { unlink(folder + "/" + name) }
        rmdir(folder)
    }

    @Test func savedIsReadBackExactlyWithMode0600() throws {
        let dir = folder()
        defer { remove(dir) }
        let path = dir + "/guard.nft"
        try GuardFile.save(plan, to: path)
        #expect(try GuardFile.read(path) == GuardFile.script(for: plan))
        var info = stat()
        #expect(stat(path, &info) == 0)
        #expect(info.st_mode & 0o777 == 0o600)
        #expect(access(path + ".tmp", F_OK) != 0, "the temporary file is gone")
        // Saved again over itself, and over a leftover temporary file of a killed run.
        close(open(path + ".tmp", O_WRONLY | O_CREAT, 0o644))
        try GuardFile.save(plan, to: path)
        #expect(try GuardFile.read(path) == GuardFile.script(for: plan))
    }

    @Test func noFileIsNil() throws {
        #expect(try GuardFile.read("/nonexistent-tlsgate-folder/guard.nft") == nil)
    }

    @Test func aFolderThatDoesNotExistIsASaveError() {
        #expect(throws: GuardFile.Failure.self) { try GuardFile.save(plan, to: "/nonexistent-tlsgate-folder/guard.nft") }
    }

    /// A link, a FIFO (which would block a plain open) and an oversized file are refused.
    @Test func onlyARegularFileOfBoundedSizeIsRead() throws {
        let dir = folder()
        defer { remove(dir) }
        try GuardFile.save(plan, to: dir + "/guard.nft")
        #expect(symlink(dir + "/guard.nft", dir + "/link") == 0)
        #expect(throws: GuardFile.Failure.self) { try GuardFile.read(dir + "/link") }
        #expect(mkfifo(dir + "/fifo", 0o600) == 0)
        #expect(throws: GuardFile.Failure.self) { try GuardFile.read(dir + "/fifo") }
        let fd = open(dir + "/big", O_WRONLY | O_CREAT, 0o600)
        #expect(ftruncate(fd, off_t(GuardFile.maximumSize + 1)) == 0)
        close(fd)
        #expect(throws: GuardFile.Failure.self) { try GuardFile.read(dir + "/big") }
    }
}
