import NIOConcurrencyHelpers
import NIOPosix
import TLSGateTLS

/// The worker's own RSA key for `starttls = "mysql"`: the client's RSA endpoint for
/// caching_sha2_password full authentication (`MySQLClientSide`). Made on first use, once per
/// worker process, kept in memory only (never written, never logged), shared by every
/// connection and event loop.
///
/// 2048 bits: the size MySQL gives its own automatically made key pair, and what every MySQL
/// client accepts; it guards only the password's trip over the LAN to the gateway, with a
/// key that lives as long as the worker. Making one takes a tenth of a second to about a
/// second of CPU (it depends on the primes found and the machine's load); larger keys cost
/// several times that and make every password packet larger for no gain. So that no event
/// loop waits for it, `prepare()` starts making it on a thread of its own as soon as a server
/// greeting names caching_sha2_password; a full authentication that comes sooner waits for
/// the same key (the lock), it never makes a second one.
public enum MySQLGatewayKey {
    public static let bits = 2048
    private static let key = NIOLockedValueBox<RSAKey?>(nil)
    private static let prepared = NIOLockedValueBox(false)

    /// Starts making the key on a thread of its own (once per worker; later calls do nothing).
    public static func prepare() {
        let first = prepared.withLockedValue { started in
            defer { started = true }
            return !started
        }
        guard first else { return }
        // One thread of its own (NIOThreadPool.singleton sizes itself by reading cgroup files,
        // which the workers' seccomp filter forbids); it stays, idle, for the worker's life.
        // A failure here is not lost: shared() tries again and the connection says why.
        let pool = NIOThreadPool(numberOfThreads: 1)
        pool.start()
        pool.submit { _ in _ = try? shared() }
    }

    /// The key, made now if this is the first call.
    public static func shared() throws(RSAKeyError) -> RSAKey {
        try key.withLockedValue { key -> Result<RSAKey, RSAKeyError> in
            if let key { return .success(key) }
            let made = Result { () throws(RSAKeyError) in try RSAKey.generate(bits: bits) }
            if case .success(let new) = made { key = new }
            return made
        }.get()
    }
}
