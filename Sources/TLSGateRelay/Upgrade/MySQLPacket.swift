/// MySQL/MariaDB client/server protocol packets: a 3-byte little-endian payload length, a
/// sequence number, the payload. Only what the `mysql` upgrade needs: framing with a size
/// bound, the capability bits it reads, and the ERR packet the gateway answers with.
public enum MySQLPacket {
    /// Capability flags (the lower 32 bits; MariaDB's extended ones are carried untouched).
    public enum Capability {
        public static let connectWithDB: UInt32 = 1 << 3
        public static let protocol41: UInt32 = 1 << 9
        public static let ssl: UInt32 = 1 << 11
        public static let secureConnection: UInt32 = 1 << 15
        public static let pluginAuth: UInt32 = 1 << 19
        public static let sslVerifyServerCert: UInt32 = 1 << 30
    }

    /// The gateway's own refusals: ER_HANDSHAKE_ERROR, SQLSTATE 08S01 (communication link failure).
    public static let refusalCode: UInt16 = 1043
    public static let refusalState = "08S01"

    /// One packet on the wire.
    public static func frame(sequence: UInt8, _ payload: [UInt8]) -> [UInt8] {
        let length = payload.count
        return [UInt8(length & 0xff), UInt8(length >> 8 & 0xff), UInt8(length >> 16 & 0xff), sequence] + payload
    }

    /// An ERR packet (protocol 4.1 form): what `mariadb` and `mysql` print as
    /// `ERROR 1043 (08S01): <message>`.
    public static func err(sequence: UInt8, _ message: String, code: UInt16 = refusalCode) -> [UInt8] {
        var payload: [UInt8] = [0xff, UInt8(code & 0xff), UInt8(code >> 8)]
        payload += Array("#\(refusalState)".utf8)
        payload += Array(UpgradeText.printable(message, max: 400).utf8)
        return frame(sequence: sequence, payload)
    }

    static func uint16(_ bytes: ArraySlice<UInt8>, at index: Int) -> UInt32 {
        UInt32(bytes[index]) | UInt32(bytes[index + 1]) << 8
    }

    static func uint32(_ bytes: ArraySlice<UInt8>, at index: Int) -> UInt32 {
        uint16(bytes, at: index) | uint16(bytes, at: index + 2) << 16
    }

    static func littleEndian32(_ value: UInt32) -> [UInt8] {
        [UInt8(value & 0xff), UInt8(value >> 8 & 0xff), UInt8(value >> 16 & 0xff), UInt8(value >> 24)]
    }

    /// The message of an ERR payload (`0xff`, code, optional `#SQLSTATE`, text), printable.
    static func errText(_ payload: [UInt8]) -> String {
        guard payload.count >= 3, payload[0] == 0xff else { return "" }
        let code = uint16(payload[...], at: 1)
        var text = payload.dropFirst(3)
        if text.first == UInt8(ascii: "#"), text.count >= 6 { text = text.dropFirst(6) }
        return "\(code) \(UpgradeText.printable(text))"
    }
}

/// Splits a byte stream into MySQL packets, buffering at most one packet of `maxPayload`
/// bytes: a longer one (or a 16 MiB continuation) is refused, never buffered.
struct MySQLPacketReader: Sendable {
    enum Next: Equatable {
        case packet(sequence: UInt8, payload: [UInt8])
        case needMore
        /// The next packet announces this many payload bytes, over the bound.
        case oversized(Int)
    }

    /// The bound for the next packet; an exchange may change it between packets.
    var maxPayload: Int
    private var buffer: [UInt8] = []

    init(maxPayload: Int) { self.maxPayload = maxPayload }

    var isEmpty: Bool { buffer.isEmpty }
    var buffered: Int { buffer.count }

    mutating func append(_ bytes: [UInt8]) { buffer += bytes }

    /// What is buffered and not yet a whole packet; empties the reader.
    mutating func drain() -> [UInt8] {
        defer { buffer = [] }
        return buffer
    }

    mutating func next() -> Next {
        guard buffer.count >= 4 else { return .needMore }
        let length = Int(buffer[0]) | Int(buffer[1]) << 8 | Int(buffer[2]) << 16
        guard length <= maxPayload else { return .oversized(length) }
        guard buffer.count >= 4 + length else { return .needMore }
        let packet = Next.packet(sequence: buffer[3], payload: Array(buffer[4..<(4 + length)]))
        buffer.removeFirst(4 + length)
        return packet
    }
}
