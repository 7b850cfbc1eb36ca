/// The little BER (X.690) LDAP's StartTLS needs: definite lengths only, at most 4 length
/// bytes, every length checked against what is there. A value that does not fit is an
/// error, never a crash or a read past the end.
enum BER {
    struct TLV: Equatable {
        let tag: UInt8
        let value: ArraySlice<UInt8>
        /// Where the element ended in the input.
        let end: Int
    }

    enum ReadError: Error, Equatable {
        /// Not all of the element is there yet.
        case incomplete
        case malformed(String)
    }

    /// One element at `offset` in `bytes` (single-byte tags only, as LDAP uses).
    static func read(_ bytes: [UInt8], at offset: Int, limit: Int) throws -> TLV {
        guard offset < bytes.count else { throw ReadError.incomplete }
        let tag = bytes[offset]
        guard tag & 0x1f != 0x1f else { throw ReadError.malformed("multi-byte tag 0x\(String(tag, radix: 16))") }
        guard offset + 1 < bytes.count else { throw ReadError.incomplete }
        let first = bytes[offset + 1]
        var length = 0
        var start = offset + 2
        if first < 0x80 {
            length = Int(first)
        } else {
            let count = Int(first & 0x7f)
            guard count > 0 else { throw ReadError.malformed("indefinite length") }
            guard count <= 4 else { throw ReadError.malformed("a length of \(count) bytes") }
            guard offset + 2 + count <= bytes.count else { throw ReadError.incomplete }
            for byte in bytes[(offset + 2)..<(offset + 2 + count)] { length = length << 8 | Int(byte) }
            start += count
        }
        guard length <= limit else { throw ReadError.malformed("an element of \(length) bytes (limit \(limit))") }
        guard start + length <= bytes.count else { throw ReadError.incomplete }
        return TLV(tag: tag, value: bytes[start..<(start + length)], end: start + length)
    }

    /// A non-negative INTEGER/ENUMERATED of 1...4 bytes.
    static func integer(_ value: ArraySlice<UInt8>) throws -> Int {
        guard (1...4).contains(value.count) else { throw ReadError.malformed("an integer of \(value.count) bytes") }
        guard value.first! & 0x80 == 0 else { throw ReadError.malformed("a negative integer") }
        return value.reduce(0) { $0 << 8 | Int($1) }
    }

    /// Tag, definite length, value.
    static func encode(_ tag: UInt8, _ value: [UInt8]) -> [UInt8] {
        var out = [tag]
        switch value.count {
        case 0..<0x80: out.append(UInt8(value.count))
        case 0x80...0xff: out += [0x81, UInt8(value.count)]
        default: out += [0x82, UInt8(value.count >> 8 & 0xff), UInt8(value.count & 0xff)]
        }
        return out + value
    }
}
