import Logging
import NIOConcurrencyHelpers
import NIOCore
import TLSGatePolicy
import TLSGateTLS

/// What every connection of a worker shares: the validated policy, its one TLS context
/// (and so its session cache), the connection cap, the gateway's own addresses.
final class WorkerShared: Sendable {
    let policy: Policy
    let tlsContext: TLSContext
    let logger: Logger
    let limiter: ConnectionLimiter
    /// The totals the worker reports to the supervisor (`stats` lines).
    let stats = ConnectionStats()
    /// TPROXY: the accepted socket's local address is the original destination.
    let transparent: Bool
    /// The gateway's own addresses, parsed once per refresh (not per connection).
    private let localAddresses: NIOLockedValueBox<Set<IPAddress>>
    /// The policy's destination networks now (its hosts' addresses follow DNS).
    private let destinations: NIOLockedValueBox<[IPNetwork]>
    /// One per event loop, made up front (read-only afterwards, so no lock).
    private let flushers: [ObjectIdentifier: TickFlusher]

    init(
        policy: Policy, tlsContext: TLSContext, logger: Logger, localAddresses: Set<String>, transparent: Bool,
        eventLoops: [EventLoop] = []
    ) {
        self.policy = policy
        self.transparent = transparent
        self.tlsContext = tlsContext
        self.logger = logger
        self.limiter = ConnectionLimiter(limit: policy.limits.maxConnections)
        self.localAddresses = NIOLockedValueBox(DestinationCheck.addresses(localAddresses))
        self.destinations = NIOLockedValueBox(policy.match.networks)
        if case .fixed(let name) = policy.upstream.serverName {
            self.fixedIdentity = Self.identity(named: name)
        } else {
            self.fixedIdentity = nil
        }
        self.flushers = Dictionary(
            eventLoops.map { (ObjectIdentifier($0), TickFlusher(eventLoop: $0)) }, uniquingKeysWith: { first, _ in first })
    }

    /// The loop's flusher (nil for a loop the worker did not make: flushes go out at once).
    func flusher(for eventLoop: EventLoop) -> TickFlusher? {
        flushers[ObjectIdentifier(eventLoop)]
    }

    /// Receive buffer sizes of the two channels. NIO keeps each channel's last receive
    /// buffer for the next read (`NIOPooledRecvBufferAllocator`), at the size the adaptive
    /// allocator has reached: an idle connection holds one per side. NIO's default starts at
    /// 2 KiB; these start at what one read usually brings (a client's request; a resumed
    /// handshake's flight or a small response on the upstream side) and double on every
    /// read that fills the buffer, up to NIO's usual 64 KiB, so bulk transfers still read
    /// 64 KiB at a time after a few reads. Measured: 2 KiB less per idle connection.
    static let clientReceiveSizes = AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 512, maximum: 65536)
    static let upstreamReceiveSizes = AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 1024, maximum: 65536)

    /// Replaces the destination networks; returns the old ones.
    func updateDestinations(_ networks: [IPNetwork]) -> [IPNetwork] {
        destinations.withLockedValue { current in
            defer { current = networks }
            return current
        }
    }

    func updateLocalAddresses(_ addresses: Set<String>) {
        let parsed = DestinationCheck.addresses(addresses)
        localAddresses.withLockedValue { $0 = parsed }
    }

    func destinationCheck() -> DestinationCheck {
        DestinationCheck(
            policy: policy, localAddresses: localAddresses.withLockedValue { $0 }, networks: destinations.withLockedValue { $0 })
    }

    /// The name the server's certificate must carry (and the SNI): the policy's fixed name,
    /// or the client's Host (`http-host`; the destination address when it sent none).
    /// - Parameter requestedHost: the request's Host, for `server_name = "http-host"`.
    func identity(for target: IPAddress, requestedHost: String?) -> TLSPeerIdentity {
        if let fixedIdentity { return fixedIdentity }
        return Self.identity(serverName: policy.upstream.serverName, target: target, requestedHost: requestedHost)
    }

    /// `fixed` names: decided once (is the name an address?), not per connection.
    private let fixedIdentity: TLSPeerIdentity?

    /// What `identity(for:requestedHost:)` gives, without the policy's cached fixed name.
    static func identity(serverName: ServerName, target: IPAddress, requestedHost: String?) -> TLSPeerIdentity {
        switch serverName {
        case .fixed(let name): return identity(named: name)
        case .httpHost: return identity(named: requestedHost ?? target.description)
        }
    }

    /// An address literal is checked as an IP SAN, anything else as a DNS name.
    static func identity(named name: String) -> TLSPeerIdentity {
        IPAddress(name) != nil ? .ipAddress(name) : .dnsName(name)
    }
}

extension TLSClientConfiguration {
    /// The TLS settings of a validated policy.
    public init(policy: Policy) {
        self.init(rule: policy.tls)
        // postgres-direct: ALPN "postgresql", offered and required (check allows no other).
        if let alpn = policy.upstream.starttls?.requiredALPN {
            self.alpn = [alpn]
            self.alpnRequired = true
        }
    }

    /// The TLS settings of a validated policy's `[tls]` table.
    public init(rule tls: TLSRule) {
        self.init(
            trustSystem: tls.trustSystem,
            caFiles: tls.caFiles,
            minVersion: tls.minVersion,
            maxVersion: tls.maxVersion,
            alpn: tls.alpn,
            alpnRequired: tls.alpnRequired,
            verifyDepth: tls.verifyDepth,
            acceptedNames: tls.acceptedNames,
            pins: tls.pinDigests,
            pinOnly: tls.pinOnly,
            crlFiles: tls.crlFiles,
            ocsp: tls.ocsp,
            ciphers: tls.ciphers,
            ciphersuites: tls.ciphersuites,
            groups: tls.groups,
            signatureAlgorithms: tls.signatureAlgorithms,
            clientCertificate: tls.clientCertificate,
            clientKey: tls.clientKey)
    }
}
