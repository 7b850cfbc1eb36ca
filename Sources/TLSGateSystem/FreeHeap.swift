import CTLSGateLinux

/// The heap a long-lived process no longer uses, given back.
///
/// glibc keeps freed memory in its arenas for reuse; after a configuration is loaded (the
/// TOML, the policies, a CA bundle parsed to check it) most of what start-up allocated is
/// free but stays resident. Measured with a 140-certificate trust bundle: the supervisor's
/// heap 1,304 → 1,020 KiB, a worker's 1,340 → 1,268 KiB.
public enum FreeHeap {
    /// `malloc_trim(0)`: free pages back to the kernel — the free chunks of every arena and
    /// the main arena's free top (a thread's arena keeps its free top up to the trim
    /// threshold: glibc trims that only when a free() makes it larger). Returns whether any
    /// were given back. Costs a walk of the free lists: after a load, not per connection.
    @discardableResult
    public static func release() -> Bool {
        tg_linux_release_free_heap() == 1
    }

    /// Freed memory kept for reuse under traffic: glibc gives the top of an arena back to
    /// the kernel once it is above `trimThreshold` (128 KiB by default), and a relay that
    /// moves data frees and allocates 64 KiB buffers all the time, so each give-back was
    /// followed by the same pages faulted in again and zeroed. Blocks below
    /// `mmapThreshold` come from the arenas (fixing one threshold stops glibc moving both).
    @discardableResult
    public static func keepForReuse(mmapThreshold: Int, trimThreshold: Int) -> Bool {
        tg_linux_keep_free_heap(mmapThreshold, trimThreshold) == 0
    }

    /// A worker's thresholds: its 64 KiB relay buffers from the arenas (below 1 MiB), the
    /// top of an arena kept up to 2 MiB free.
    @discardableResult
    public static func keepForRelaying() -> Bool {
        keepForReuse(mmapThreshold: 1 << 20, trimThreshold: 2 << 20)
    }
}
