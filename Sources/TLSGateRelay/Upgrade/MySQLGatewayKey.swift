import NIOConcurrencyHelpers
import TLSGateTLS

/// The worker's own RSA key for `starttls = "mysql"`: the client's RSA endpoint for
/// caching_sha2_password full authentication (`MySQLClientSide`). Made on first use, once per
/// worker process, kept in memory only (never written, never logged), shared by every
/// connection and event loop.
///
/// 2048 bits: the size MySQL gives its own automatically made key pair, and what every MySQL
/// client accepts; it guards only the password's trip over the LAN to the gateway, with a
/// key that lives as long as the worker. Making it takes some 50–200 ms of one event loop,
/// once; larger keys cost seconds and make every password packet larger for no gain.
public enum MySQLGatewayKey {
    public static let bits = 2048
    private static let key = NIOLockedValueBox<RSAKey?>(nil)

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
