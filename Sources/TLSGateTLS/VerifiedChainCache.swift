import COpenSSL
import CTLSGateOpenSSL
import NIOConcurrencyHelpers

#if canImport(Glibc)
import Glibc
#endif

/// Chains a context verified recently, by the exact certificates the server presented, so
/// that a full handshake with a server seen a moment ago does not build and check the
/// same chain again (`X509_verify_cert`: two signature checks and the chain search, about
/// 350 µs of the ~2.3 ms a full handshake costs the gateway on the bench's ECDSA chain).
///
/// What a hit skips is only what cannot change for the same bytes under the same context:
/// the chain from the presented certificates to an anchor of this context's store, under
/// its depth and purpose. A hit needs the same leaf and the same other certificates, in
/// the same order, byte for byte (the whole DER is the key, no digest); it holds for
/// `lifetime` seconds at most and never past the first notAfter of the chain, by the wall
/// clock (a clock set back before the check misses). Everything else runs on every
/// handshake: the server's signature over the handshake with this leaf's key (OpenSSL),
/// the name or address, the pins, the OCSP staple. Only successes are kept; a context
/// with CRLs or `pin_only` does not use the cache (a CRL's nextUpdate, pins as anchors).
/// A new context (a worker's start, a reload that changes the policy) starts empty.
///
/// Shared by the event loops of a worker: the entries sit behind a lock. Holds one
/// reference to each certificate of each chain it keeps.
final class VerifiedChainCache: Sendable {
    /// Seconds a verified chain is trusted again without a new check.
    static let lifetime = 300

    private struct Entry {
        let chain: OpaquePointer  // STACK_OF(X509), owned
        let verifiedAt: Int  // wall clock, seconds
        let validUntil: Int  // wall clock: min(verifiedAt + lifetime, the first notAfter)
    }
    /// The presented certificates, DER back to back; hashed as one block of bytes (an
    /// array's own hashing feeds the hasher byte by byte).
    struct Key: Hashable {
        let der: [UInt8]
        func hash(into hasher: inout Hasher) {
            der.withUnsafeBytes { hasher.combine(bytes: $0) }
        }
    }
    private struct Storage: @unchecked Sendable {
        var entries: [Key: Entry] = [:]
        var order: [Key] = []  // insertion order, for eviction
        var hits = 0
    }
    private let storage = NIOLockedValueBox(Storage())
    let capacity: Int

    init(capacity: Int = 128) { self.capacity = max(1, capacity) }

    deinit {
        storage.withLockedValue { s in
            for entry in s.entries.values { tg_ssl_sk_x509_free_all(entry.chain) }
            s.entries.removeAll()
        }
    }

    /// The key for the chain a server presented: its leaf and the rest, DER back to back.
    static func key(leaf: OpaquePointer, rest: OpaquePointer?) -> Key? {
        let length = tg_ssl_presented_chain_der(leaf, rest, nil, 0)  // the length only
        guard length > 0 else { return nil }
        var written = 0
        let key = [UInt8](unsafeUninitializedCapacity: length) { buffer, count in
            written = tg_ssl_presented_chain_der(leaf, rest, buffer.baseAddress, length)
            count = written == length ? length : 0
        }
        return written == length ? Key(der: key) : nil
    }

    /// A new reference to the verified chain kept for `key` (the caller owns it), or nil
    /// when there is none that holds at `now` (wall clock, seconds).
    func chain(for key: Key, now: Int = time(nil)) -> OpaquePointer? {
        let (found, stale): (OpaquePointer?, OpaquePointer?) = storage.withLockedValue { s in
            guard let entry = s.entries[key] else { return (nil, nil) }
            guard now >= entry.verifiedAt, now < entry.validUntil else {
                s.entries[key] = nil
                s.order.removeAll { $0 == key }
                return (nil, entry.chain)
            }
            s.hits += 1
            return (X509_chain_up_ref(entry.chain), nil)
        }
        if let stale { tg_ssl_sk_x509_free_all(stale) }
        return found
    }

    /// Keeps `chain` (a STACK_OF(X509) whose ownership passes here), just verified for
    /// `key` at `now`. Not kept when a certificate of it is past its notAfter (or the
    /// dates cannot be read).
    func store(_ chain: OpaquePointer, for key: Key, now: Int = time(nil)) {
        let secondsLeft = tg_ssl_chain_seconds_left(chain)
        guard secondsLeft > 0 else {
            tg_ssl_sk_x509_free_all(chain)
            return
        }
        let entry = Entry(chain: chain, verifiedAt: now, validUntil: now + min(Self.lifetime, secondsLeft))
        let freed: [OpaquePointer] = storage.withLockedValue { s in
            var freed: [OpaquePointer] = []
            if let old = s.entries.updateValue(entry, forKey: key) {
                freed.append(old.chain)
            } else {
                s.order.append(key)
            }
            while s.order.count > capacity, let victim = s.order.first {
                s.order.removeFirst()
                if let old = s.entries.removeValue(forKey: victim) { freed.append(old.chain) }
            }
            return freed
        }
        for chain in freed { tg_ssl_sk_x509_free_all(chain) }
    }

    /// Chains kept.
    var count: Int { storage.withLockedValue { $0.entries.count } }
    /// Lookups answered from the cache so far.
    var hits: Int { storage.withLockedValue { $0.hits } }
}
