import Testing

@testable import TLSGateSystem

#if canImport(Glibc)
import Glibc
#endif

/// Under AddressSanitizer or ThreadSanitizer (`Scripts/sanitize.sh`) malloc is the
/// sanitizer's allocator, not glibc's, and malloc_trim has nothing to give back.
private let glibcMalloc = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "__asan_init") == nil
    && dlsym(UnsafeMutableRawPointer(bitPattern: 0), "__tsan_init") == nil

/// Serialized: both tests read this process's resident size around what they free.
@Suite(.serialized) struct FreeHeapTests {
    /// Resident pages of this process (/proc/self/statm, second field), in KiB; -1 if unread.
    private func residentKiB() -> Int {
        guard let file = fopen("/proc/self/statm", "r") else { return -1 }
        defer { fclose(file) }
        var line = [CChar](repeating: 0, count: 128)
        guard fgets(&line, Int32(line.count), file) != nil else { return -1 }
        let fields = String(cString: line).split(separator: " ")
        guard fields.count >= 2, let pages = Int(fields[1]) else { return -1 }
        return pages * Int(sysconf(Int32(_SC_PAGESIZE))) / 1024
    }

    /// `count` blocks of 64 KiB from malloc, every page written (so resident).
    private func writtenBlocks(_ count: Int) throws -> [UnsafeMutableRawPointer] {
        try (0..<count).map { _ in
            let block = try #require(malloc(64 * 1024))
            memset(block, 0x5a, 64 * 1024)
            return block
        }
    }

    @Test(.enabled(if: glibcMalloc, "skipped: malloc is a sanitizer's, not glibc's"))
    func freedHeapBelowALiveBlockGoesBack() throws {
        // 32 MiB in 64 KiB blocks (below the mmap threshold: they come from the heap), each
        // page written; then all freed but the last one allocated, which keeps glibc from
        // shrinking the heap's top by itself. The free 32 MiB stay resident until the trim.
        var blocks = try writtenBlocks(512)
        let pin = blocks.removeLast()
        for block in blocks { free(block) }
        let before = residentKiB()
        #expect(FreeHeap.release())
        let after = residentKiB()
        free(pin)
        #expect(before > 0 && after > 0)
        // Other tests run in parallel and allocate too: ask for most of it, not all.
        #expect(before - after >= 16 * 1024, "resident \(before) KiB -> \(after) KiB")
    }

    /// What the worker's thresholds do, in whatever arena the test thread's heap is: with a
    /// trim threshold above what is freed, free() keeps the heap's top resident; with glibc's
    /// default (128 KiB) the same free gives it back at once. (malloc_trim gives back a
    /// thread arena's free chunks but not its top: that stays up to the threshold.)
    @Test(.enabled(if: glibcMalloc, "skipped: malloc is a sanitizer's, not glibc's"))
    func freedTopStaysBelowTheTrimThreshold() throws {
        defer { FreeHeap.keepForRelaying() }  // back to the worker's
        // 32 MiB: other suites allocate in parallel, possibly in the same arena, and can pin
        // part of what is freed; the bounds below ask for a quarter of it.
        #expect(FreeHeap.keepForReuse(mmapThreshold: 16 << 20, trimThreshold: 64 << 20))
        var blocks = try writtenBlocks(512)
        var before = residentKiB()
        for block in blocks.reversed() { free(block) }
        let kept = residentKiB()
        #expect(before > 0 && kept > 0)
        #expect(before - kept < 4 * 1024, "free() gave back: \(before) KiB -> \(kept) KiB")

        #expect(FreeHeap.keepForReuse(mmapThreshold: 16 << 20, trimThreshold: 128 << 10))
        blocks = try writtenBlocks(512)
        before = residentKiB()
        for block in blocks.reversed() { free(block) }
        let after = residentKiB()
        #expect(before - after >= 8 * 1024, "free() kept: \(before) KiB -> \(after) KiB")
    }

    @Test func aThresholdBeyondAnIntIsRefused() {
        // mallopt takes an int: a larger value is refused before anything is set.
        #expect(!FreeHeap.keepForReuse(mmapThreshold: Int(Int32.max) + 1, trimThreshold: 2 << 20))
        #expect(!FreeHeap.keepForReuse(mmapThreshold: 1 << 20, trimThreshold: Int(Int32.max) + 1))
    }
}
