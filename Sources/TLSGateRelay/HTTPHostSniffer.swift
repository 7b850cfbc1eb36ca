/// Reads an HTTP/1.x request head as it arrives and finds the name the client wants, for
/// policies with `server_name = "http-host"`: the TLS server name is then taken from the
/// request itself. Bounded in bytes; pure, so it is tested without sockets.
/// `package`: the fuzz target (Sources/tlsgate-fuzz) drives it too.
package struct HTTPHostSniffer {
    package enum Result: Equatable {
        /// The head is not complete yet.
        case needMore
        /// The host (lower-cased, without port; IPv6 without brackets).
        case host(String)
        /// Not a request tlsgate can route: answer 400.
        case bad(String)
    }

    let maxBytes: Int
    private var head: [UInt8] = []
    private(set) var result: Result = .needMore

    package init(maxBytes: Int) {
        self.maxBytes = maxBytes
    }

    /// A method is shorter than this (the longest registered one, UPDATEREDIRECTREF, has 17
    /// bytes): a head with no space in its first `methodLimit` bytes is not HTTP.
    static let methodLimit = 32

    /// What `.bad` says when the client opens with a TLS record instead of a request.
    static let clientHello = "the client sent a TLS ClientHello: it already speaks TLS"

    package mutating func feed<Bytes: Sequence>(_ bytes: Bytes) -> Result where Bytes.Element == UInt8 {
        guard result == .needMore else { return result }
        for byte in bytes {
            if head.isEmpty && byte == 0x16 {
                result = .bad(Self.clientHello)
                return result
            }
            head.append(byte)
            if head.count > maxBytes {
                result = .bad("request head larger than \(maxBytes) bytes")
                return result
            }
            if byte == 0x0a, head.count >= 2, endsHead() {
                result = parse()
                return result
            }
        }
        // A head that cannot be HTTP is refused at once, not after maxBytes. Both checks look
        // at the head's start only, and `parse` refuses the same heads, so the verdict never
        // depends on how the request was split into reads (found by the http-host fuzz target).
        if let space = head.firstIndex(of: 0x20), !head[..<space].allSatisfy(Self.isTokenChar) {
            result = .bad("not an HTTP request")
        } else if head.count >= Self.methodLimit, !head.prefix(Self.methodLimit).contains(0x20) {
            result = .bad("not an HTTP request")
        }
        return result
    }

    private func endsHead() -> Bool {
        let n = head.count
        if n >= 4, head[n - 4] == 0x0d, head[n - 3] == 0x0a, head[n - 2] == 0x0d, head[n - 1] == 0x0a { return true }
        return head[n - 2] == 0x0a  // bare LF line endings
    }

    private func parse() -> Result {
        // Split on bytes: in Swift "\r\n" is one Character and would never equal "\n".
        var lines = head.split(separator: 0x0a, omittingEmptySubsequences: false).map { line -> Substring in
            let bytes = line.last == 0x0d ? line.dropLast() : line
            return Substring(String(decoding: bytes, as: UTF8.self))
        }
        while let last = lines.last, last.isEmpty { lines.removeLast() }
        guard let requestLine = lines.first else { return .bad("empty request") }
        let parts = requestLine.split(separator: " ", omittingEmptySubsequences: false)
        guard parts.count == 3, !parts[0].isEmpty, parts[0].utf8.count < Self.methodLimit,
            parts[0].utf8.allSatisfy(Self.isTokenChar),
            parts[2] == "HTTP/1.1" || parts[2] == "HTTP/1.0"
        else {
            return .bad("not an HTTP/1.x request line")
        }
        var hosts: [Substring] = []
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { return .bad("malformed header line") }
            let name = line[..<colon]
            if name.lowercased() == "host" {
                hosts.append(line[line.index(after: colon)...])
            }
        }
        guard hosts.count == 1 else {
            return .bad(hosts.isEmpty ? "missing Host header" : "more than one Host header")
        }
        return Self.host(from: hosts[0].trimmingSpaces())
    }

    /// "Example.COM:8080" → "example.com"; "[2001:db8::1]:80" → "2001:db8::1".
    static func host(from value: Substring) -> Result {
        var name = value
        if name.hasPrefix("[") {
            guard let close = name.firstIndex(of: "]") else { return .bad("malformed Host header") }
            let rest = name[name.index(after: close)...]
            guard rest.isEmpty || (rest.hasPrefix(":") && rest.dropFirst().allSatisfy(\.isNumber)) else {
                return .bad("malformed Host header")
            }
            name = name[name.index(after: name.startIndex)..<close]
            guard !name.isEmpty, name.allSatisfy({ $0.isHexDigit || $0 == ":" || $0 == "." }) else {
                return .bad("malformed Host header")
            }
            return .host(name.lowercased())
        }
        if let colon = name.lastIndex(of: ":") {
            let port = name[name.index(after: colon)...]
            guard !port.isEmpty, port.allSatisfy(\.isNumber) else { return .bad("malformed Host header") }
            name = name[..<colon]
        }
        if name.hasSuffix(".") { name = name.dropLast() }
        guard !name.isEmpty, name.count <= 253,
            name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == ".") }),
            !name.split(separator: ".", omittingEmptySubsequences: false).contains(where: { $0.isEmpty || $0.count > 63 })
        else {
            return .bad("Host header \"\(value.prefix(80))\" is not a host name")
        }
        return .host(name.lowercased())
    }

    static func isTokenChar(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        default:
            return Array("!#$%&'*+-.^_`|~".utf8).contains(byte)
        }
    }

    /// Whether `host` is allowed by `patterns`: exact names, or "*.example.com" matching
    /// exactly one more label ("a.example.com", not "example.com" or "a.b.example.com").
    package static func isAllowed(_ host: String, by patterns: [String]) -> Bool {
        patterns.contains { pattern in
            let pattern = pattern.lowercased()
            if pattern.hasPrefix("*.") {
                let suffix = pattern.dropFirst(1)  // ".example.com"
                guard host.hasSuffix(suffix) else { return false }
                let label = host.dropLast(suffix.count)
                return !label.isEmpty && !label.contains(".")
            }
            return host == pattern
        }
    }
}

extension Substring {
    func trimmingSpaces() -> Substring {
        var s = self
        while let first = s.first, first == " " || first == "\t" { s = s.dropFirst() }
        while let last = s.last, last == " " || last == "\t" { s = s.dropLast() }
        return s
    }
}

/// Name rules the CLI shares with the relay.
public enum RelayNames {
    /// `allowed_names` matching: exact, or `*.example.com` for exactly one more label.
    public static func isAllowed(_ host: String, by patterns: [String]) -> Bool {
        HTTPHostSniffer.isAllowed(host, by: patterns)
    }
}
