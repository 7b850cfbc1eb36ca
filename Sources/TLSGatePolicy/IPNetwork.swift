/// An IPv4 or IPv6 network: an address with all host bits clear, and a prefix length.
///
/// IPv4-mapped IPv6 forms are treated as the IPv4 they carry: `::ffff:203.0.113.7` is
/// contained in `203.0.113.0/24`, and `::ffff:203.0.113.0/120` overlaps `203.0.113.0/24`.
/// A plain IPv6 network never contains an IPv4 address (`::/0` does not cover IPv4).
/// Encoded as its text form (`"203.0.113.0/24"`).
public struct IPNetwork: Sendable, Hashable, Codable, CustomStringConvertible {
    /// The network address (host bits clear), as written: 4 or 16 bytes.
    public let address: IPAddress
    /// 0...32 for IPv4, 0...128 for IPv6.
    public let prefixLength: Int

    /// Parses `"203.0.113.0/24"`, `"2001:db8::/32"`, or a bare address (= /32 or /128).
    /// Nil when the text is not a network; `parse(_:)` says why.
    public init?(_ text: String) {
        guard let network = try? Self.parse(text) else { return nil }
        self = network
    }

    /// A network from an address and a prefix length; throws if the prefix is out of
    /// range or host bits are set.
    public init(address: IPAddress, prefixLength: Int) throws(IPNetworkParseError) {
        let text = "\(address)/\(prefixLength)"
        let maximum = address.bytes.count * 8
        guard (0...maximum).contains(prefixLength) else {
            throw IPNetworkParseError(text: text, reason: .badPrefix(maximum: maximum))
        }
        let masked = Self.mask(address.bytes, prefixLength)
        guard masked == address.bytes else {
            let meant = IPNetwork(unchecked: IPAddress(uncheckedBytes: masked), prefixLength)
            throw IPNetworkParseError(text: text, reason: .hostBitsSet(meant: meant, single: "\(address)/\(maximum)"))
        }
        self.address = address
        self.prefixLength = prefixLength
    }

    /// Parses like `init?(_:)`, but throws an error that says what is wrong and, when
    /// host bits are set, which network was probably meant.
    public static func parse(_ text: String) throws(IPNetworkParseError) -> IPNetwork {
        let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        guard let address = IPAddress(String(parts[0])) else {
            throw IPNetworkParseError(text: text, reason: .notAnAddress)
        }
        let maximum = address.bytes.count * 8
        guard parts.count == 2 else {
            return IPNetwork(unchecked: address, maximum)
        }
        let prefixText = parts[1]
        guard !prefixText.isEmpty, prefixText.count <= 3, prefixText.allSatisfy({ $0.isASCII && $0.isNumber }),
            let prefix = Int(prefixText), (0...maximum).contains(prefix),
            prefixText == "0" || !prefixText.hasPrefix("0")
        else {
            throw IPNetworkParseError(text: text, reason: .badPrefix(maximum: maximum))
        }
        do {
            return try IPNetwork(address: address, prefixLength: prefix)
        } catch {
            throw IPNetworkParseError(text: text, reason: error.reason)
        }
    }

    init(unchecked address: IPAddress, _ prefixLength: Int) {
        self.address = address
        self.prefixLength = prefixLength
    }

    /// True if `address` lies in this network (mapped IPv6 and IPv4 compare as IPv4).
    public func contains(_ address: IPAddress) -> Bool {
        let (networkBytes, networkPrefix) = normalized
        let addressBytes = address.unmapped.bytes
        guard networkBytes.count == addressBytes.count else { return false }
        return Self.mask(addressBytes, networkPrefix) == networkBytes
    }

    /// True if the two networks share at least one address (one contains the other).
    public func overlaps(_ other: IPNetwork) -> Bool {
        let (bytesA, prefixA) = normalized
        let (bytesB, prefixB) = other.normalized
        guard bytesA.count == bytesB.count else { return false }
        let common = min(prefixA, prefixB)
        return Self.mask(bytesA, common) == Self.mask(bytesB, common)
    }

    /// True if every address of `other` is in this network.
    public func contains(_ other: IPNetwork) -> Bool {
        let (bytesA, prefixA) = normalized
        let (bytesB, prefixB) = other.normalized
        guard bytesA.count == bytesB.count, prefixA <= prefixB else { return false }
        return Self.mask(bytesB, prefixA) == bytesA
    }

    /// `203.0.113.0/24`, `2001:db8::/32`.
    public var description: String { "\(address)/\(prefixLength)" }

    /// The network written in the family it covers (a mapped network as plain IPv4), as
    /// firewall rules need it.
    public var familyDescription: String {
        let (bytes, prefix) = normalized
        guard let address = IPAddress(bytes: bytes) else { return description }
        return "\(address)/\(prefix)"
    }

    /// True for an IPv4 network or an IPv4-mapped IPv6 one (::ffff:0:0/96 or longer).
    public var isIPv4: Bool { normalized.bytes.count == 4 }

    /// The network in the family it really covers: a mapped network with a prefix of
    /// at least 96 becomes the IPv4 network it carries.
    var normalized: (bytes: [UInt8], prefix: Int) {
        if address.isIPv4Mapped && prefixLength >= 96 {
            return (Array(address.bytes[12..<16]), prefixLength - 96)
        }
        return (address.bytes, prefixLength)
    }

    static func mask(_ bytes: [UInt8], _ prefix: Int) -> [UInt8] {
        var result = bytes
        for index in result.indices {
            let bitsBefore = index * 8
            if bitsBefore >= prefix {
                result[index] = 0
            } else if prefix - bitsBefore < 8 {
                result[index] &= UInt8(0xFF) << UInt8(8 - (prefix - bitsBefore))
            }
        }
        return result
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let text = try container.decode(String.self)
        do {
            self = try Self.parse(text)
        } catch {
            throw DecodingError.dataCorruptedError(in: container, debugDescription: error.description)
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}
