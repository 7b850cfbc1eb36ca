import COpenSSL
import CTLSGateOpenSSL
import NIOConcurrencyHelpers
import NIOCore

/// Owns one OpenSSL `SSL_CTX` configured for a policy. Shared by every connection and
/// every event loop of a worker (OpenSSL contexts are thread-safe once configured), and
/// holds the session cache that lets a new connection to the same server resume.
public final class TLSContext: Sendable {
    // The pointer is set once in init and freed once in deinit; OpenSSL guards the object.
    nonisolated(unsafe) let ctx: OpaquePointer
    public let configuration: TLSClientConfiguration
    let sessions: TLSSessionCache
    /// Chains verified recently (nil: not used with CRLs or `pin_only`; see the type).
    let verifiedChains: VerifiedChainCache?

    public init(configuration: TLSClientConfiguration) throws(TLSError) {
        OpenSSLErrorQueue.clear()
        guard let ctx = SSL_CTX_new(TLS_client_method()) else {
            throw OpenSSLErrorQueue.error(.configuration, "SSL_CTX_new failed")
        }
        self.ctx = ctx
        self.configuration = configuration
        self.sessions = TLSSessionCache(capacity: configuration.sessionCacheSize)
        self.verifiedChains = configuration.crlFiles.isEmpty && !configuration.pinOnly ? VerifiedChainCache() : nil
        // Every stored property is set: if this throws, deinit runs and frees ctx.
        try Self.configure(ctx, configuration)
        SSL_CTX_sess_set_new_cb(ctx, tlsgateNewSessionCallback)
    }

    deinit {
        SSL_CTX_free(ctx)
    }

    /// What is always appended to the TLS 1.2 cipher list: no suite without server
    /// authentication or without encryption, whatever the policy's list says. A `!` in
    /// OpenSSL removes the suites for good, so nothing earlier in the list can bring them back.
    static let cipherListHardening = "!aNULL:!eNULL"

    /// The cipher list handed to OpenSSL for a policy's `ciphers` (nil: OpenSSL's DEFAULT).
    static func cipherList(_ ciphers: String?) -> String {
        "\(ciphers ?? "DEFAULT"):\(cipherListHardening)"
    }

    private static func configure(_ ctx: OpaquePointer, _ configuration: TLSClientConfiguration) throws(TLSError) {
        // The system's security level (Debian: 2). A policy cannot change it: `@SECLEVEL`
        // in the cipher list is refused here and by the policy check, and the level is set
        // again after the list.
        let baselineLevel = SSL_CTX_get_security_level(ctx)
        guard tg_ssl_ctx_set_min_proto_version(ctx, configuration.minVersion.openSSLVersion) == 1 else {
            throw OpenSSLErrorQueue.error(
                .configuration, "cannot set minimum version \(configuration.minVersion.openSSLName)", setting: .minVersion)
        }
        if let max = configuration.maxVersion {
            guard max >= configuration.minVersion,
                tg_ssl_ctx_set_max_proto_version(ctx, max.openSSLVersion) == 1
            else {
                throw OpenSSLErrorQueue.error(.configuration, "cannot set maximum version \(max.openSSLName)", setting: .maxVersion)
            }
        }
        _ = tg_ssl_ctx_set_options(ctx, tg_ssl_op_no_renegotiation() | tg_ssl_op_no_compression())
        // Idle connections give their 34 KiB of record buffers back; the socket layer
        // writes whole buffers, and OpenSSL may be handed a moved buffer on retry.
        _ = tg_ssl_ctx_set_mode(ctx, tg_ssl_mode_release_buffers() | tg_ssl_mode_accept_moving_write_buffer())
        _ = tg_ssl_ctx_set_session_cache_mode(ctx, tg_ssl_sess_cache_client_no_internal())

        // Verification is always on; a failed chain aborts the handshake. tlsgate runs the
        // whole check itself (chain, identity, pins: see TLSConnection.verifyPeer), and
        // checks again after every handshake, resumed ones too (TLSConnection.handshake).
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nil)
        SSL_CTX_set_verify_depth(ctx, Int32(max(1, configuration.verifyDepth)))
        SSL_CTX_set_cert_verify_callback(ctx, tlsgateCertVerifyCallback, nil)
        if configuration.ocsp != .off {
            _ = tg_ssl_ctx_set_tlsext_status_cb(ctx, tlsgateOCSPStatusCallback)
        }
        if let ciphers = configuration.ciphers, ciphers.lowercased().contains("@seclevel") {
            throw TLSError(
                kind: .configuration,
                context: "ciphers \"\(ciphers)\" sets @SECLEVEL: the security level is not a policy setting",
                setting: .ciphers)
        }
        let cipherList = Self.cipherList(configuration.ciphers)
        guard SSL_CTX_set_cipher_list(ctx, cipherList) == 1 else {
            throw OpenSSLErrorQueue.error(
                .configuration, "OpenSSL finds no usable cipher in \"\(configuration.ciphers ?? "DEFAULT")\"",
                setting: .ciphers)
        }
        // Legacy versions need security level 0 in OpenSSL 3; only a policy that asks for
        // them gets it (the policy layer warns about it). It lowers the level for versions,
        // keys and signatures, never for anonymous or null suites: the list above has none.
        SSL_CTX_set_security_level(ctx, configuration.minVersion < .tls1_2 ? 0 : baselineLevel)
        if let suites = configuration.ciphersuites, SSL_CTX_set_ciphersuites(ctx, suites) != 1 {
            throw OpenSSLErrorQueue.error(
                .configuration, "OpenSSL refuses the TLS 1.3 suites \"\(suites)\"", setting: .ciphersuites)
        }
        if let groups = configuration.groups, tg_ssl_ctx_set1_groups_list(ctx, groups) != 1 {
            throw OpenSSLErrorQueue.error(.configuration, "OpenSSL refuses the groups \"\(groups)\"", setting: .groups)
        }
        if let sigalgs = configuration.signatureAlgorithms, tg_ssl_ctx_set1_sigalgs_list(ctx, sigalgs) != 1 {
            throw OpenSSLErrorQueue.error(
                .configuration, "OpenSSL refuses the signature algorithms \"\(sigalgs)\"",
                setting: .signatureAlgorithms)
        }
        if let certificate = configuration.clientCertificate {
            guard let key = configuration.clientKey else {
                throw TLSError(kind: .configuration, context: "client_certificate without client_key", setting: .clientKey)
            }
            guard SSL_CTX_use_certificate_chain_file(ctx, certificate) == 1 else {
                throw OpenSSLErrorQueue.error(
                    .configuration, "cannot load the client certificate \(certificate)", setting: .clientCertificate)
            }
            guard SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) == 1 else {
                throw OpenSSLErrorQueue.error(.configuration, "cannot load the client key \(key)", setting: .clientKey)
            }
            guard SSL_CTX_check_private_key(ctx) == 1 else {
                throw OpenSSLErrorQueue.error(
                    .configuration, "the client key \(key) does not match \(certificate)", setting: .clientKey)
            }
        }
        if !configuration.crlFiles.isEmpty {
            let store = SSL_CTX_get_cert_store(ctx)
            guard let lookup = X509_STORE_add_lookup(store, X509_LOOKUP_file()) else {
                throw OpenSSLErrorQueue.error(.configuration, "cannot add a CRL lookup", setting: .crl)
            }
            for file in configuration.crlFiles {
                guard X509_load_crl_file(lookup, file, X509_FILETYPE_PEM) > 0 else {
                    throw OpenSSLErrorQueue.error(.configuration, "cannot load the CRL file \(file)", setting: .crl)
                }
            }
            // The leaf is checked against the CRLs; a CRL past its nextUpdate fails.
            X509_STORE_set_flags(store, UInt(X509_V_FLAG_CRL_CHECK))
        }
        if configuration.trustSystem {
            guard SSL_CTX_load_verify_locations(
                ctx, TLSClientConfiguration.systemCAFile, TLSClientConfiguration.systemCADirectory) == 1
            else {
                throw OpenSSLErrorQueue.error(
                    .configuration, "cannot load the system trust store \(TLSClientConfiguration.systemCAFile)",
                    setting: .trust)
            }
        }
        for file in configuration.caFiles {
            guard SSL_CTX_load_verify_file(ctx, file) == 1 else {
                throw OpenSSLErrorQueue.error(.configuration, "cannot load the CA file \(file)", setting: .trust)
            }
        }
        if !configuration.trustSystem && configuration.caFiles.isEmpty && !configuration.pinOnly {
            throw TLSError(
                kind: .configuration, context: "no trust anchors: trust the system store or give a CA file", setting: .trust)
        }
        if !configuration.alpn.isEmpty {
            var wire: [UInt8] = []
            for proto in configuration.alpn {
                let bytes = Array(proto.utf8)
                guard !bytes.isEmpty, bytes.count <= 255 else {
                    throw TLSError(kind: .configuration, context: "bad ALPN protocol name \"\(proto)\"", setting: .alpn)
                }
                wire.append(UInt8(bytes.count))
                wire.append(contentsOf: bytes)
            }
            // Note: SSL_CTX_set_alpn_protos returns 0 on success.
            guard SSL_CTX_set_alpn_protos(ctx, wire, UInt32(wire.count)) == 0 else {
                throw OpenSSLErrorQueue.error(.configuration, "cannot set ALPN protocols", setting: .alpn)
            }
        }
    }
}

/// Sessions for resumption per (server address, port, name), shared by every connection of
/// a worker. Holds one reference to each `SSL_SESSION` it stores.
///
/// TLS 1.3 tickets are used once: servers with a session cache (OpenSSL's anti-replay, nginx
/// with `ssl_session_cache`) accept each ticket a single time, so a connection takes a ticket
/// out of the pool and the server's fresh ticket(s) refill it. A TLS 1.2 session stays and
/// is shared. Each key keeps its `perKey` newest sessions (enough for a burst of concurrent
/// connections to one server: with 8, only 74% of them resumed under 50 at once; with 64,
/// 100%, measured by Scripts/bench.sh); the cache keeps `capacity` keys.
///
/// Each session remembers until when the good OCSP staple of the handshake that made it
/// holds (its nextUpdate): a resumed handshake carries no staple, so under
/// `ocsp = require-stapled` a session is offered only while that verdict holds.
final class TLSSessionCache: Sendable {
    struct Entry {
        let session: OpaquePointer
        /// The good staple's nextUpdate, or nil when no staple was verified (or it had none).
        let stapleValidUntil: NIODeadline?
    }
    private struct Storage: @unchecked Sendable {
        var entries: [String: [Entry]] = [:]  // oldest first
        var order: [String] = []  // insertion order of keys, for eviction
    }
    private let storage = NIOLockedValueBox(Storage())
    private let capacity: Int
    static let perKey = 64

    init(capacity: Int) { self.capacity = max(1, capacity) }

    deinit {
        storage.withLockedValue { s in
            for sessions in s.entries.values { sessions.forEach { SSL_SESSION_free($0.session) } }
            s.entries.removeAll()
        }
    }

    /// Takes ownership of one reference to `session`.
    func store(_ session: OpaquePointer, for key: String, stapleValidUntil: NIODeadline? = nil) {
        let entry = Entry(session: session, stapleValidUntil: stapleValidUntil)
        let evicted: [Entry] = storage.withLockedValue { s in
            var freed: [Entry] = []
            if var sessions = s.entries[key] {
                sessions.append(entry)
                while sessions.count > Self.perKey { freed.append(sessions.removeFirst()) }
                s.entries[key] = sessions
            } else {
                s.entries[key] = [entry]
                s.order.append(key)
                while s.order.count > capacity {
                    let victim = s.order.removeFirst()
                    freed.append(contentsOf: s.entries.removeValue(forKey: victim) ?? [])
                }
            }
            return freed
        }
        for entry in evicted { SSL_SESSION_free(entry.session) }
    }

    /// Sets the newest resumable session for `key` on `ssl`: a TLS 1.3 one leaves the pool.
    /// With `needsStaple`, only a session whose staple verdict still holds at `now` is
    /// offered (the others are dropped). Returns the offered session's staple verdict
    /// (`.some(nil)` for a session without one), or nil when none was offered.
    @discardableResult
    func apply(to ssl: OpaquePointer, key: String, needsStaple: Bool = false, now: NIODeadline = .now())
        -> NIODeadline??
    {
        var offered: NIODeadline?? = nil
        let spent: [Entry] = storage.withLockedValue { s in
            guard var sessions = s.entries[key] else { return [] }
            var spent: [Entry] = []
            while let entry = sessions.last {
                guard SSL_SESSION_is_resumable(entry.session) == 1,
                    !needsStaple || (entry.stapleValidUntil.map { $0 > now } ?? false)
                else {
                    spent.append(sessions.removeLast())
                    continue
                }
                _ = SSL_set_session(ssl, entry.session)  // takes its own reference
                offered = .some(entry.stapleValidUntil)
                if SSL_SESSION_get_protocol_version(entry.session) >= TLS1_3_VERSION {
                    spent.append(sessions.removeLast())
                }
                break
            }
            s.entries[key] = sessions
            return spent
        }
        for entry in spent { SSL_SESSION_free(entry.session) }
        return offered
    }

    /// Forgets `key`, e.g. after a handshake with one of its sessions failed.
    func remove(_ key: String) {
        let old = storage.withLockedValue { s -> [Entry] in
            guard let old = s.entries.removeValue(forKey: key) else { return [] }
            s.order.removeAll { $0 == key }
            return old
        }
        for entry in old { SSL_SESSION_free(entry.session) }
    }

    /// Keys with at least one session.
    var count: Int { storage.withLockedValue { $0.entries.values.filter { !$0.isEmpty }.count } }
    /// Sessions held for `key`.
    func sessions(for key: String) -> Int { storage.withLockedValue { $0.entries[key]?.count ?? 0 } }
}

/// OpenSSL calls this when the server issues a session (at handshake end in TLS 1.2, in a
/// NewSessionTicket message after it in TLS 1.3). Returning 1 keeps the reference.
private func tlsgateNewSessionCallback(_ ssl: OpaquePointer?, _ session: OpaquePointer?) -> Int32 {
    guard let ssl, let session, let raw = tg_ssl_get_app_data(ssl) else { return 0 }
    let connection = Unmanaged<TLSConnection>.fromOpaque(raw).takeUnretainedValue()
    // Only a session of a verified server is kept: with no peer certificate (an anonymous
    // suite) or a failed check, returning 0 lets OpenSSL drop it.
    guard connection.mayCacheSession(session) else { return 0 }
    connection.context.sessions.store(session, for: connection.sessionKey, stapleValidUntil: connection.stapleValidUntil)
    return 1
}

/// OpenSSL's certificate check for every tlsgate connection (see `TLSConnection.verifyPeer`).
private func tlsgateCertVerifyCallback(_ store: OpaquePointer?, _ arg: UnsafeMutableRawPointer?) -> Int32 {
    guard let store, let ssl = tg_ssl_from_store_ctx(store), let raw = tg_ssl_get_app_data(ssl) else { return 0 }
    return Unmanaged<TLSConnection>.fromOpaque(raw).takeUnretainedValue().verifyPeer(store)
}

/// Called with the server's stapled OCSP response (or none).
private func tlsgateOCSPStatusCallback(_ ssl: OpaquePointer?, _ arg: UnsafeMutableRawPointer?) -> Int32 {
    guard let ssl, let raw = tg_ssl_get_app_data(ssl) else { return 0 }
    return Unmanaged<TLSConnection>.fromOpaque(raw).takeUnretainedValue().checkStaple()
}
