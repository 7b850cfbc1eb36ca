#if canImport(Glibc)
import Glibc
#endif
import TLSGatePolicy
import TLSGateRelay

/// The fuzz targets: each takes arbitrary bytes, must never crash, hang or break one of its
/// invariants (a broken invariant is a `fatalError`, which the fuzzer reports as a crash).
enum FuzzTarget: String, CaseIterable {
    /// The TOML reader, then the policy decoder on what it read.
    case policy
    /// The same bytes as the global config (`tlsgate.toml`).
    case config
    /// The HTTP Host sniffer, fed all at once and in chunks: the same verdict either way.
    case httpHost = "http-host"
    /// The STARTTLS upgrade state machines (the server's replies) and PostgreSQL's client preamble.
    case starttls

    /// The target named by `TLSGATE_FUZZ_TARGET` (libFuzzer runs one target per process).
    static let fromEnvironment: FuzzTarget = {
        guard let raw = getenv("TLSGATE_FUZZ_TARGET"), let target = FuzzTarget(rawValue: String(cString: raw)) else {
            let names = FuzzTarget.allCases.map(\.rawValue).joined(separator: ", ")
            printError("tlsgate-fuzz: set TLSGATE_FUZZ_TARGET to one of: \(names)\n")
            exit(2)
        }
        return target
    }()

    func run(_ bytes: [UInt8]) {
        switch self {
        case .policy: Self.policy(bytes)
        case .config: Self.config(bytes)
        case .httpHost: Self.httpHost(bytes)
        case .starttls: Self.starttls(bytes)
        }
    }

    /// File paths a fuzzed policy may name are resolved against a folder that does not exist.
    static let folder = "/nonexistent/tlsgate-fuzz"

    static func policy(_ bytes: [UInt8]) {
        let document = TOMLReader.read(String(decoding: bytes, as: UTF8.self))
        for error in document.errors where error.line < 1 {
            fatalError("TOML error without a line: \(error)")
        }
        guard document.errors.isEmpty else { return }
        var decoder = PolicyFileDecoder(file: folder + "/fuzz.toml", root: document.table)
        let policy = decoder.decode()
        if policy == nil && decoder.diagnostics.isEmpty {
            fatalError("policy refused without a diagnostic")
        }
    }

    static func config(_ bytes: [UInt8]) {
        let document = TOMLReader.read(String(decoding: bytes, as: UTF8.self))
        guard document.errors.isEmpty else { return }
        var decoder = GatewayConfigDecoder(file: folder + "/tlsgate.toml", root: document.table)
        _ = decoder.decode()
    }

    /// Byte 0 picks the chunk size (1...16) of the second feeding; the rest is the request.
    static func httpHost(_ bytes: [UInt8]) {
        guard let first = bytes.first else { return }
        let request = Array(bytes.dropFirst())
        let chunk = Int(first % 16) + 1
        var whole = HTTPHostSniffer(maxBytes: 4096)
        let atOnce = whole.feed(request)
        var split = HTTPHostSniffer(maxBytes: 4096)
        var inChunks = HTTPHostSniffer.Result.needMore
        var offset = 0
        while offset < request.count, inChunks == .needMore {
            inChunks = split.feed(request[offset..<min(offset + chunk, request.count)])
            offset += chunk
        }
        switch (atOnce, inChunks) {
        case (.host(let a), .host(let b)) where a == b: break
        case (.bad, .bad), (.needMore, .needMore): break
        default: fatalError("the sniffer's verdict depends on how the request is split: \(atOnce) vs \(inChunks)")
        }
        if case .host(let host) = atOnce {
            guard !host.isEmpty, host == host.lowercased(), !host.contains(" ") else {
                fatalError("sniffed host \"\(host)\" is not a clean name")
            }
            _ = HTTPHostSniffer.isAllowed(host, by: ["example.test", "*.example.test", host])
        }
    }

    /// Byte 0 picks the protocol, byte 1 the chunk size; the rest are the server's bytes
    /// (for `postgres`, also the client's preamble).
    static func starttls(_ bytes: [UInt8]) {
        guard bytes.count >= 2 else { return }
        let protocols = StartTLSProtocol.allCases
        let proto = protocols[Int(bytes[0]) % protocols.count]
        let chunk = Int(bytes[1] % 32) + 1
        let input = Array(bytes.dropFirst(2))
        var upgrade = StartTLSUpgrade(proto, ehloName: "gateway.test")
        var action = upgrade.start()
        var offset = 0
        var steps = 0
        while offset < input.count {
            switch action {
            case .startTLS, .refuse, .sendThenStartTLS: offset = input.count; continue
            case .greetClient:
                // MySQL: the next chunk stands for the client's answer to the made greeting.
                action = upgrade.clientAnswered(Array(input[offset..<min(offset + chunk, input.count)]))
                offset += chunk
                steps += 1
                continue
            case .send, .needMore: break
            }
            action = upgrade.receive(Array(input[offset..<min(offset + chunk, input.count)]))
            offset += chunk
            steps += 1
            if steps > input.count + 1 { fatalError("upgrade did not progress") }
        }
        if case .refuse(let why) = action, why.isEmpty { fatalError("refusal without a reason") }
        _ = upgrade.transcript
        if proto == .mysql { mysqlAuthentication(input, chunk: chunk) }
        if proto == .postgres {
            var preamble = PostgresClientPreamble()
            offset = 0
            while offset < input.count, !preamble.done {
                _ = preamble.receive(Array(input[offset..<min(offset + chunk, input.count)]))
                offset += chunk
            }
        }
    }
}

extension FuzzTarget {
    /// MySQL after TLS: the input as the server's authentication packets, and as the client's
    /// answer to caching_sha2_password full authentication (the gateway as its RSA endpoint,
    /// with the worker's key), in chunks.
    static func mysqlAuthentication(_ input: [UInt8], chunk: Int) {
        var server = MySQLServerAuth()
        var client = MySQLClientSide()
        client.greeted(scramble: [UInt8](repeating: 0x61, count: 20))
        _ = client.receive(MySQLPacket.frame(sequence: 1, MySQLUpgrade.probeResponse))
        client.serverSent(sequence: 2)
        client.serverAsked(fullAuthentication: true, switchScramble: nil)
        var offset = 0
        while offset < input.count {
            let piece = Array(input[offset..<min(offset + chunk, input.count)])
            offset += chunk
            if case .refuse(let why) = server.receive(piece, lead: client.lead), why.isEmpty {
                fatalError("server refusal without a reason")
            }
            if case .refuse(let refusal) = client.receive(piece), refusal.detail.isEmpty {
                fatalError("client refusal without a reason")
            }
        }
    }
}

#if TLSGATE_LIBFUZZER
/// libFuzzer's own driver (libclang_rt.fuzzer_no_main), called with our arguments and callback.
@_silgen_name("LLVMFuzzerRunDriver")
private func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<Int32>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32
) -> Int32

enum LibFuzzer {
    static func run() -> Int32 {
        _ = FuzzTarget.fromEnvironment  // fail at once on a bad target name
        var argc = CommandLine.argc
        var argv = CommandLine.unsafeArgv
        return LLVMFuzzerRunDriver(&argc, &argv) { data, size in
            let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
            FuzzTarget.fromEnvironment.run(bytes)
            return 0
        }
    }
}
#endif
