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
/// its verification parameters. The key is those parameters (flags, depth, security level;
/// a check made with a per-connection setting — a host, e-mail or IP to match, a fixed
/// time — is never kept) and the presented certificates, leaf first, the whole DER (no
/// digest; a chain longer than `maxKeyBytes` is checked in full every time, so a server
/// cannot fill the cache with padded chains). An entry holds for `lifetime` seconds at
/// most, only between the latest notBefore and the earliest notAfter of the verified
/// chain, and not once the wall clock went back before the check. Everything else runs
/// on every handshake: the server's signature over the handshake with this leaf's key
/// (OpenSSL), the name or address, the pins, the OCSP staple. Only successes are kept; a
/// context with CRLs or `pin_only` does not use the cache (a CRL's nextUpdate, pins as
/// anchors). A new context (a worker's start, a reload that changes the policy) starts
/// empty. Eviction is oldest first.
///
/// Shared by the event loops of a worker: the entries sit behind a lock. Holds one
/// reference to each certificate of each chain it keeps.
final class VerifiedChainCache: Sendable {
    /// Seconds a verified chain is trusted again without a new check.
    static let lifetime = 300
    /// The longest key kept: the parameters and up to 16 KiB of certificates (a real chain
    /// is 1–6 KiB).
    static let maxKeyBytes = 16 * 1024 + paramBytes
    static let paramBytes = 5 * MemoryLayout<UInt64>.size

    private struct Entry {
        let chain: OpaquePointer  // STACK_OF(X509), owned
        let verifiedAt: Int  // wall clock, seconds
        let validFrom: Int  // the chain's latest notBefore
        let validUntil: Int  // min(verifiedAt + lifetime, the chain's earliest notAfter)
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

    init(capacity: Int = 64) { self.capacity = max(1, capacity) }

    deinit {
        storage.withLockedValue { s in
            for entry in s.entries.values { tg_ssl_sk_x509_free_all(entry.chain) }
            s.entries.removeAll()
        }
    }

    /// The key for a check about to run on `store` (OpenSSL's context for the chain the server
    /// presented: its leaf, and the presented list, which starts with the leaf again): the
    /// parameters, then the certificates' DER back to back. Nil when the check must not be
    /// reused (a per-connection parameter) or the chain is longer than `limit` bytes.
    static func key(for store: OpaquePointer, leaf: OpaquePointer, limit: Int = maxKeyBytes) -> Key? {
        var params = [UInt64](repeating: 0, count: 5)
        guard tg_ssl_store_ctx_shared_params(store, &params) == 1 else { return nil }
        return key(params: params, leaf: leaf, rest: X509_STORE_CTX_get0_untrusted(store), limit: limit)
    }

    static func key(params: [UInt64], leaf: OpaquePointer, rest: OpaquePointer?, limit: Int = maxKeyBytes) -> Key? {
        let derLength = tg_ssl_presented_chain_der(leaf, rest, nil, 0)  // the length only
        let length = paramBytes + derLength
        guard derLength > 0, params.count * MemoryLayout<UInt64>.size == paramBytes, length <= limit else { return nil }
        var written = 0
        let key = [UInt8](unsafeUninitializedCapacity: length) { buffer, count in
            params.withUnsafeBytes { UnsafeMutableRawBufferPointer(buffer).copyMemory(from: $0) }
            written = tg_ssl_presented_chain_der(leaf, rest, buffer.baseAddress! + paramBytes, derLength)
            count = written == derLength ? length : 0
        }
        return written == derLength ? Key(der: key) : nil
    }

    /// A new reference to the verified chain kept for `key` (the caller owns it), or nil
    /// when there is none that holds at `now` (wall clock, seconds).
    func chain(for key: Key, now: Int = time(nil)) -> OpaquePointer? {
        let (found, stale): (OpaquePointer?, OpaquePointer?) = storage.withLockedValue { s in
            guard let entry = s.entries[key] else { return (nil, nil) }
            guard now >= entry.verifiedAt, now >= entry.validFrom, now < entry.validUntil else {
                s.entries[key] = nil
                s.order.removeAll { $0 == key }
                return (nil, entry.chain)
            }
            guard let copy = X509_chain_up_ref(entry.chain) else { return (nil, nil) }
            s.hits += 1
            return (copy, nil)
        }
        if let stale { tg_ssl_sk_x509_free_all(stale) }
        return found
    }

    /// Keeps `chain` (a STACK_OF(X509) whose ownership passes here), just verified for
    /// `key` at `now`. Not kept when `now` is outside the chain's dates (or they cannot be
    /// read).
    func store(_ chain: OpaquePointer, for key: Key, now: Int = time(nil)) {
        var notBefore: Int64 = 0
        var notAfter: Int64 = 0
        guard tg_ssl_chain_validity(chain, &notBefore, &notAfter) == 1, Int64(now) >= notBefore, Int64(now) < notAfter
        else {
            tg_ssl_sk_x509_free_all(chain)
            return
        }
        let entry = Entry(
            chain: chain, verifiedAt: now, validFrom: Int(notBefore),
            validUntil: Int(min(Int64(now + Self.lifetime), notAfter)))
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
    /// Their keys, oldest first.
    var keys: [Key] { storage.withLockedValue { $0.order } }
    /// Lookups answered from the cache so far.
    var hits: Int { storage.withLockedValue { $0.hits } }
}
