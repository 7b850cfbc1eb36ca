#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An IPv4 or IPv6 address: 4 or 16 bytes in network order.
///
/// IPv4-mapped IPv6 addresses (`::ffff:203.0.113.7`) keep their 16 bytes here, but
/// `IPNetwork` treats them as the IPv4 address they carry (see `unmapped`).
/// Encoded as its text form (`"203.0.113.7"`, `"2001:db8::1"`).
public struct IPAddress: Sendable, Hashable, Codable, CustomStringConvertible {
    /// 4 bytes for IPv4, 16 for IPv6, network order.
    public let bytes: [UInt8]

    /// Parses a dotted-quad IPv4 or an RFC 4291 IPv6 address (no zone, no brackets, no prefix).
    public init?(_ text: String) {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 {
            bytes = withUnsafeBytes(of: &v4) { Array($0) }
            return
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, text, &v6) == 1 {
            bytes = withUnsafeBytes(of: &v6) { Array($0) }
            return
        }
        return nil
    }

    /// An address from 4 or 16 bytes in network order; nil for any other count.
    public init?(bytes: [UInt8]) {
        guard bytes.count == 4 || bytes.count == 16 else { return nil }
        self.bytes = bytes
    }

    /// True for a 4-byte address. A mapped address (`::ffff:a.b.c.d`) is not; see `unmapped`.
    public var isIPv4: Bool { bytes.count == 4 }

    /// True for an IPv4-mapped IPv6 address, `::ffff:a.b.c.d`.
    public var isIPv4Mapped: Bool {
        bytes.count == 16 && bytes[0..<10].allSatisfy { $0 == 0 } && bytes[10] == 0xFF && bytes[11] == 0xFF
    }

    /// The IPv4 address inside an IPv4-mapped address; the address itself otherwise.
    public var unmapped: IPAddress {
        isIPv4Mapped ? IPAddress(uncheckedBytes: Array(bytes[12..<16])) : self
    }

    /// The usual text form: `203.0.113.7`, `2001:db8::1`, `::ffff:203.0.113.7` (inet_ntop's;
    /// IPv4 written directly, as inet_ntop would: every connection's log line has two).
    public var description: String {
        if bytes.count == 4 { return "\(bytes[0]).\(bytes[1]).\(bytes[2]).\(bytes[3])" }
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
        let family = isIPv4 ? AF_INET : AF_INET6
        let ok = bytes.withUnsafeBytes { source in
            buffer.withUnsafeMutableBufferPointer { target in
                inet_ntop(family, source.baseAddress, target.baseAddress, socklen_t(target.count)) != nil
            }
        }
        guard ok else { return bytes.map(String.init).joined(separator: ".") }
        return buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }

    init(uncheckedBytes: [UInt8]) {
        self.bytes = uncheckedBytes
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let text = try container.decode(String.self)
        guard let address = IPAddress(text) else {
            throw DecodingError.dataCorruptedError(
                in: container, debugDescription: "\(quoted(text)) is not an IP address")
        }
        self = address
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}
