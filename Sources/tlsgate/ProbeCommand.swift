import ArgumentParser
import FoundationEssentials

#if canImport(Glibc)
import Glibc
#endif
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import TLSGatePolicy
import TLSGateRelay
import TLSGateTLS
import TLSGateSystem

/// `tlsgate probe`: connect to a server as the gateway would under a policy, and say why
/// it would (not) relay.
struct ProbeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "probe",
        abstract: "Connect to a server as the gateway would and show the chain, each check and the verdict.",
        discussion: """
            Uses the policy's upstream port, server name and every [tls] setting, exactly as a \
            worker does, and checks the address as a worker checks a connection's original \
            destination (in the policy's networks or hosts, not the gateway itself). Exit \
            status: 0 when the policy accepts the server, 1 when a worker would refuse it (or \
            the server cannot be reached or verified), 2 on bad usage or a bad policy.
            """
    )

    @Option(help: ArgumentHelp("The policy file.", valueName: "file"))
    var policy: String

    @Option(help: ArgumentHelp(
        "The server address (default: the policy's only address, or its first host resolved).", valueName: "ip"))
    var address: String?

    @Option(help: ArgumentHelp(
        "For server_name = \"http-host\" policies: the Host a client would send.", valueName: "name"))
    var host: String?

    func run() throws {
        let (loaded, diagnostics) = PolicyLoader.loadFile(policy, tlsCheck: PolicyTLSCheck.check)
        for diagnostic in diagnostics { StandardStream.error("\(diagnostic)\n") }
        guard let loaded, !diagnostics.contains(where: \.isError) else { throw ExitCode(2) }

        let target = try targetAddress(loaded)
        // What the worker's destination check would say of a connection to this address.
        let destination = Self.destinationVerdict(target, policy: loaded)
        let identity: TLSPeerIdentity
        switch loaded.upstream.serverName {
        case .fixed(let name):
            identity = IPAddress(name) != nil ? .ipAddress(name) : .dnsName(name)
        case .httpHost:
            guard let host else {
                throw ValidationError("this policy takes the name from the Host header: give --host NAME")
            }
            guard ProbeSupport.isAllowed(host, policy: loaded) else {
                print("verdict: REFUSED: Host \"\(host)\" is not in allowed_names")
                throw ExitCode(1)
            }
            identity = .dnsName(host.lowercased())
        }

        let configuration = TLSClientConfiguration(policy: loaded)
        let context: TLSContext
        do {
            context = try TLSContext(configuration: configuration)
        } catch {
            StandardStream.error("tlsgate probe: \(policy): \(error)\n")
            throw ExitCode(2)
        }
        let port = Int(loaded.upstream.port)
        print("policy:  \(loaded.name) (\(loaded.sourcePath))")
        print("server:  \(Self.endpoint(target, port))")
        print("name:    \(identity)\(identity.isDNS ? " (sent as SNI)" : " (IP SANs; no SNI)")")
        if case .refuse(let reason, let detail) = destination {
            print("check destination: REFUSED: \(detail) (\(reason)): a worker would not connect")
        }

        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        let outcome = group.next().makePromise(of: TLSHandshakeInfo.self)
        let timeout = TimeAmount.milliseconds(loaded.upstream.connectTimeout.milliseconds)
        let transcript = NIOLockedValueBox<[String]>([])
        let result: Result<TLSHandshakeInfo, Error>
        do {
            let socketAddress = try SocketAddress(ipAddress: target, port: port)
            let channel = try ClientBootstrap(group: group)
                .connectTimeout(timeout)
                .channelOption(.allowRemoteHalfClosure, value: true)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        if let proto = loaded.upstream.starttls {
                            // The same upgrade a worker speaks, then TLS.
                            try channel.pipeline.syncOperations.addHandler(StartTLSUpgradeHandler(
                                proto,
                                makeTLSHandler: { TLSClientHandler(context: context, identity: identity, sessionKey: "probe", reportsPeerChain: true) },
                                onUpgraded: { steps in transcript.withLockedValue { $0 = steps } },
                                onRefused: { why, steps in
                                    transcript.withLockedValue { $0 = steps }
                                    outcome.fail(ProbeUpgradeRefused(detail: why))
                                }, ehloName: loaded.upstream.ehloName))
                        } else {
                            try channel.pipeline.syncOperations.addHandler(
                                TLSClientHandler(context: context, identity: identity, sessionKey: "probe", reportsPeerChain: true))
                        }
                        try channel.pipeline.syncOperations.addHandler(ProbeHandler(outcome: outcome))
                    }
                }
                .connect(to: socketAddress).wait()
            channel.eventLoop.scheduleTask(in: timeout * 2) {
                outcome.fail(TLSError(kind: .handshakeFailed, context: "no TLS handshake within twice \(loaded.upstream.connectTimeout)"))
            }
            result = Result { try outcome.futureResult.wait() }
            channel.close(promise: nil)
            if let proto = loaded.upstream.starttls {
                print("upgrade: \(proto.displayName) (starttls = \"\(proto.rawValue)\")")
                for step in transcript.withLockedValue({ $0 }) { print("  \(step)") }
            }
        } catch {
            outcome.fail(error)  // never left pending: a leaked promise traps in debug builds
            result = .failure(error)
        }
        try report(result, configuration: configuration, destination: destination, server: Self.endpoint(target, port),
            connectTimeout: loaded.upstream.connectTimeout)
    }

    /// The worker's `DestinationCheck` for a connection to `address` on the match port,
    /// with the policy's hosts resolved as the supervisor resolves them for its workers.
    static func destinationVerdict(_ address: String, policy: Policy) -> DestinationCheck.Verdict {
        var networks = policy.match.networks
        for host in policy.match.hosts {
            for text in (try? HostResolver.addresses(of: host)) ?? [] {
                guard let ip = IPAddress(text), let network = try? IPNetwork(address: ip, prefixLength: ip.isIPv4 ? 32 : 128)
                else { continue }
                networks.append(network)
            }
        }
        let effective = Policy(
            name: policy.name, sourcePath: policy.sourcePath,
            match: MatchRule(networks: networks, hosts: policy.match.hosts, port: policy.match.port),
            upstream: policy.upstream, tls: policy.tls, limits: policy.limits, firewall: policy.firewall)
        return DestinationCheck(policy: effective, localAddresses: LocalAddresses.current())
            .evaluate(original: address, originalPort: Int(policy.match.port), socketLocal: nil, socketLocalPort: 0)
    }

    /// "198.19.0.10:443", "[2001:2::10]:443": how the worker writes an address.
    static func endpoint(_ address: String, _ port: Int) -> String {
        address.contains(":") ? "[\(address)]:\(port)" : "\(address):\(port)"
    }

    /// One reason for a failed connect, worded as the worker logs it (`detail`), with the
    /// worker's `reason`.
    static func connectFailure(_ error: Error, server: String, timeout: TimeSpan) -> (reason: RelayReason, detail: String) {
        if let channelError = error as? ChannelError, case .connectTimeout = channelError {
            return (.connectTimeout, "no answer from \(server) within \(timeout)")
        }
        let io = (error as? IOError) ?? (error as? NIOConnectionError)?.connectionErrors.lazy.compactMap { $0.error as? IOError }.first
        if let io {
            if io.errnoCode == ECONNREFUSED { return (.connectRefused, "\(server) refused the connection") }
            if io.errnoCode == ETIMEDOUT { return (.connectTimeout, "no answer from \(server) within \(timeout)") }
            return (.connectFailed, "cannot connect to \(server): \(String(cString: strerror(io.errnoCode)))")
        }
        return (.connectFailed, "cannot connect to \(server): \(error)")
    }

    private func targetAddress(_ policy: Policy) throws -> String {
        if let address {
            guard let parsed = IPAddress(address) else { throw ValidationError("--address \"\(address)\" is not an IP address") }
            return parsed.unmapped.description
        }
        let singles = policy.match.networks.filter { $0.prefixLength == ($0.isIPv4 && $0.address.isIPv4 ? 32 : 128) }
        if policy.match.networks.count == 1, let only = singles.first { return only.address.unmapped.description }
        if let host = policy.match.hosts.first, let resolved = ProbeSupport.resolve(host) { return resolved }
        throw ValidationError("the policy covers more than one address: give --address IP")
    }

    private func report(
        _ result: Result<TLSHandshakeInfo, Error>, configuration: TLSClientConfiguration,
        destination: DestinationCheck.Verdict, server: String, connectTimeout: TimeSpan
    ) throws {
        var checks: [(String, String)] = []
        let trust = (configuration.trustSystem ? ["system store"] : []) + configuration.caFiles
        switch result {
        case .success(let info):
            printChain(info.peerChain)
            checks.append(("protocol", "\(info.version), \(info.cipher)\(info.alpn.map { ", ALPN \($0)" } ?? "")"))
            checks.append(("chain", configuration.pinOnly ? "not checked (pin_only)" : "ok, to \(trust.joined(separator: " + "))"))
            if !configuration.pinOnly { checks.append(("name", "ok")) }
            if !configuration.pins.isEmpty { checks.append(("pins", "ok (\(configuration.pins.count) pin(s))")) }
            if !configuration.crlFiles.isEmpty { checks.append(("crl", "ok, not revoked")) }
            if configuration.ocsp != .off { checks.append(("ocsp", "ok (\(configuration.ocsp.rawValue))")) }
            printChecks(checks)
            if case .refuse(let reason, let detail) = destination {
                print("verdict: REFUSED: a worker would refuse this destination: \(detail) (\(reason))")
                throw ExitCode(1)
            }
            print("verdict: ACCEPTED")
        case .failure(let error):
            if let refused = error as? ProbeUpgradeRefused {
                print("check upgrade: FAILED: \(refused.detail) (\(RelayReason.starttlsRefused))")
                print("verdict: REFUSED: \(refused.detail)")
                throw ExitCode(1)
            }
            if let tls = error as? TLSError {
                if let cert = tls.peerCertificate { printChain([cert]) }
                let what = tls.kind == .verificationFailed ? "certificate" : "handshake"
                checks.append((what, "FAILED: \(tls.detail)"))
                printChecks(checks)
                if !tls.reasons.isEmpty { print("openssl: \(tls.reasons.joined(separator: "; "))") }
                print("verdict: REFUSED: \(tls.detail)")
            } else {
                let failure = Self.connectFailure(error, server: server, timeout: connectTimeout)
                print("check connect: FAILED: \(failure.detail) (\(failure.reason))")
                print("verdict: REFUSED: \(failure.detail)")
            }
            throw ExitCode(1)
        }
    }

    private func printChain(_ chain: [TLSCertificateSummary]) {
        for (index, cert) in chain.enumerated() {
            print("cert \(index): subject \(cert.subject)")
            print("        issuer  \(cert.issuer)")
            if !cert.subjectAltNames.isEmpty { print("        SANs    \(cert.subjectAltNames)") }
            print("        expires \(cert.notAfter)")
            print("        sha256  \(cert.sha256Fingerprint)")
            print("        pin     \(cert.spkiPin)")
        }
    }

    private func printChecks(_ checks: [(String, String)]) {
        for (name, verdict) in checks { print("check \(name): \(verdict)") }
    }
}

/// The server could not be upgraded (starttls): why, as a worker logs it.
struct ProbeUpgradeRefused: Error {
    let detail: String
}

/// Collects the handshake's outcome.
private final class ProbeHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    let outcome: EventLoopPromise<TLSHandshakeInfo>

    init(outcome: EventLoopPromise<TLSHandshakeInfo>) { self.outcome = outcome }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? TLSClientEvent, case .handshakeCompleted(let info) = event {
            outcome.succeed(info)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        outcome.fail(error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        outcome.fail(TLSError(kind: .closedDuringHandshake, context: "the server closed the connection"))
    }
}

extension TLSPeerIdentity {
    var isDNS: Bool {
        if case .dnsName = self { return true }
        return false
    }
}

enum ProbeSupport {
    static func isAllowed(_ host: String, policy: Policy) -> Bool {
        RelayNames.isAllowed(host.lowercased(), by: policy.upstream.allowedNames)
    }

    static func resolve(_ host: String) -> String? {
        (try? HostResolver.addresses(of: host))?.first
    }
}
