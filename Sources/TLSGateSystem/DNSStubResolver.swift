#if canImport(Glibc)
import Glibc
#endif

/// A small DNS stub resolver: asks the nameservers of /etc/resolv.conf for a name's A and
/// AAAA records over UDP and returns them with their TTL, which getaddrinfo does not give.
///
/// Bounded: at most 3 nameservers, each asked at most `attempts` times (1–2) with a wait of
/// `timeout` (1–3 s) each; answers are read by `DNSMessage` (strict, size-limited), must come
/// from the nameserver asked (a connected socket) and carry the query's random id; anything
/// else is ignored until the wait ends. No TCP: a truncated answer is an error, and the
/// caller falls back to the system resolver.
public enum DNSStubResolver {
    /// What /etc/resolv.conf says about nameservers.
    public struct Configuration: Sendable, Equatable {
        /// IPv4 or IPv6 literals, in file order, at most 3.
        public var nameservers: [String]
        /// Milliseconds to wait for each attempt.
        public var timeout: Int
        public var attempts: Int

        public static let maximumNameservers = 3
        public static let maximumFileSize = 65536

        public init(nameservers: [String], timeout: Int = 2000, attempts: Int = 1) {
            self.nameservers = nameservers
            self.timeout = timeout
            self.attempts = attempts
        }

        /// The `nameserver` lines and `options timeout:N attempts:N` of a resolv.conf text
        /// (timeout bounded to 1–3 s, attempts to 1–2). Lines it does not know are skipped,
        /// as the C library does.
        public static func parse(_ text: String) -> Configuration {
            var result = Configuration(nameservers: [])
            for line in text.split(whereSeparator: { $0 == "\n" }) {
                let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
                guard let first = words.first, !first.hasPrefix("#"), !first.hasPrefix(";") else { continue }
                if first == "nameserver", words.count >= 2, result.nameservers.count < maximumNameservers,
                    DNSStubResolver.socketAddress(String(words[1])) != nil
                {
                    result.nameservers.append(String(words[1]))
                } else if first == "options" {
                    for option in words.dropFirst() {
                        if option.hasPrefix("timeout:"), let n = Int(option.dropFirst(8)) {
                            result.timeout = min(max(n, 1), 3) * 1000
                        } else if option.hasPrefix("attempts:"), let n = Int(option.dropFirst(9)) {
                            result.attempts = min(max(n, 1), 2)
                        }
                    }
                }
            }
            return result
        }

        /// /etc/resolv.conf (at most `maximumFileSize` bytes read); no nameserver when it cannot be read.
        public static func system(path: String = "/etc/resolv.conf") -> Configuration {
            parse(HostsFile.readBounded(path, limit: maximumFileSize) ?? "")
        }
    }

    /// The addresses of `name` and the smallest TTL among the records that gave them.
    public struct Result: Sendable, Equatable {
        public var addresses: [String]
        public var ttl: UInt32
    }

    /// Asks the nameservers in turn until one answers. Throws when none answered, or when
    /// one says the name does not exist, has no addresses, or gave a truncated answer.
    public static func resolve(_ name: String, configuration: Configuration = .system()) throws(SystemError) -> Result {
        guard !configuration.nameservers.isEmpty else { throw SystemError("dns: no nameserver in /etc/resolv.conf", errno: 0) }
        do {
            _ = try DNSMessage.labels(of: name)
        } catch {
            throw SystemError("dns: \(error)", errno: 0)
        }
        var problems: [String] = []
        for server in configuration.nameservers {
            for _ in 0..<configuration.attempts {
                switch ask(server, name: name, timeout: configuration.timeout) {
                case .answered(let result): return result
                case .final(let why): throw SystemError("dns: \(server): \(why)", errno: 0)
                case .failed(let why): problems.append("\(server): \(why)")
                }
            }
        }
        throw SystemError("dns: \(problems.joined(separator: "; "))", errno: 0)
    }

    enum Outcome {
        case answered(Result)
        /// The server answered, and the answer is final (NXDOMAIN, no address, truncated).
        case final(String)
        /// No usable answer from this server: try the next one.
        case failed(String)
    }

    /// One attempt at one server: an A and an AAAA query on one connected UDP socket.
    static func ask(_ server: String, name: String, timeout: Int) -> Outcome {
        guard var address = socketAddress(server) else { return .failed("not an address") }
        let fd = socket(Int32(address.ss_family), Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { return .failed("\(SystemError("socket"))") }
        defer { close(fd) }
        let length = socklen_t(address.ss_family == sa_family_t(AF_INET) ? MemoryLayout<sockaddr_in>.size : MemoryLayout<sockaddr_in6>.size)
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, length) }
        }
        guard connected == 0 else { return .failed("\(SystemError("connect"))") }
        var pending: [UInt16: DNSMessage.RecordType] = [:]
        for type in [DNSMessage.RecordType.a, .aaaa] {
            var id = UInt16.random(in: 0...UInt16.max)
            while pending[id] != nil { id = UInt16.random(in: 0...UInt16.max) }
            guard let query = try? DNSMessage.query(id: id, name: name, type: type) else { return .final("invalid name") }
            let sent = query.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
            guard sent == query.count else { return .failed("\(SystemError("send"))") }
            pending[id] = type
        }
        var answers: [DNSMessage.RecordType: DNSMessage.Answer] = [:]
        let deadline = now() + timeout
        var buffer = [UInt8](repeating: 0, count: 4096)
        while !pending.isEmpty {
            let left = deadline - now()
            guard left > 0 else { return .failed("no answer within \(timeout) ms") }
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&poller, 1, Int32(left))
            if ready < 0 && errno == EINTR { continue }
            guard ready > 0 else { continue }
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 {
                if errno == EAGAIN || errno == EINTR { continue }
                return .failed("\(SystemError("recv"))")  // e.g. connection refused (ICMP)
            }
            let message = Array(buffer[0..<n])
            guard message.count >= 2 else { continue }
            let id = UInt16(message[0]) << 8 | UInt16(message[1])
            guard let type = pending[id] else { continue }  // not ours: keep waiting
            guard let answer = try? DNSMessage.parse(message, id: id, name: name, type: type) else { continue }
            pending[id] = nil
            answers[type] = answer
        }
        let all = answers.values
        if all.contains(where: { $0.rcode == 3 }) { return .final("the name does not exist (NXDOMAIN)") }
        if let bad = all.first(where: { $0.rcode != 0 }) {
            let words = [1: "FORMERR", 2: "SERVFAIL", 4: "NOTIMP", 5: "REFUSED"]
            return .failed("answered \(words[Int(bad.rcode)] ?? "rcode \(bad.rcode)")")
        }
        if all.contains(where: \.truncated) { return .final("truncated answer (TCP is not tried)") }
        var addresses: [String] = []
        var ttl: UInt32? = nil
        for type in [DNSMessage.RecordType.a, .aaaa] {
            guard let answer = answers[type] else { continue }
            addresses += answer.addresses.compactMap(text(of:))
            if let t = answer.ttl { ttl = min(ttl ?? t, t) }
        }
        guard !addresses.isEmpty, let ttl else { return .final("no A or AAAA record") }
        return .answered(Result(addresses: addresses.sorted(), ttl: ttl))
    }

    static func now() -> Int {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return Int(time.tv_sec) * 1000 + Int(time.tv_nsec) / 1_000_000
    }

    /// A nameserver literal as a socket address on port 53; nil for anything else (scoped
    /// IPv6 addresses included).
    static func socketAddress(_ text: String) -> sockaddr_storage? {
        var storage = sockaddr_storage()
        var v4 = in_addr()
        var v6 = in6_addr()
        if inet_pton(AF_INET, text, &v4) == 1 {
            withUnsafeMutablePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) {
                    $0.pointee.sin_family = sa_family_t(AF_INET)
                    $0.pointee.sin_port = in_port_t(53).bigEndian
                    $0.pointee.sin_addr = v4
                }
            }
            return storage
        }
        if inet_pton(AF_INET6, text, &v6) == 1 {
            withUnsafeMutablePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) {
                    $0.pointee.sin6_family = sa_family_t(AF_INET6)
                    $0.pointee.sin6_port = in_port_t(53).bigEndian
                    $0.pointee.sin6_addr = v6
                }
            }
            return storage
        }
        return nil
    }

    /// 4 or 16 address bytes as text.
    static func text(of bytes: [UInt8]) -> String? {
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
        let family = bytes.count == 4 ? AF_INET : AF_INET6
        guard bytes.count == 4 || bytes.count == 16 else { return nil }
        let ok = bytes.withUnsafeBytes { inet_ntop(family, $0.baseAddress, &buffer, socklen_t(buffer.count)) != nil }
        return ok ? buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) } : nil
    }
}
