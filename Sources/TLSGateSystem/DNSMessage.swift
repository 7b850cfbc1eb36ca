/// The two DNS messages the stub resolver needs (RFC 1035): a query for one name and
/// type, and the strict reading of its answer. Pure, so it is tested with crafted bytes.
///
/// Bounds: a message of at most `maximumSize` bytes, at most `maximumRecords` records in
/// the answer section, names of at most 255 bytes, compression pointers that only point
/// backwards (so no loop) and at most `maximumPointers` of them per name, a CNAME chain
/// of at most `maximumCNAMEs` links. Anything else — a short or malformed message, a
/// record running past the end, an answer to another question — is an error, never a
/// partial answer.
public enum DNSMessage {
    public static let maximumSize = 65535
    public static let maximumRecords = 256
    public static let maximumPointers = 32
    public static let maximumCNAMEs = 8
    public static let maximumNameLength = 255

    public enum RecordType: UInt16, Sendable {
        case a = 1
        case cname = 5
        case aaaa = 28
    }

    /// What an answer says.
    public struct Answer: Sendable, Equatable {
        /// The response code: 0 NOERROR, 2 SERVFAIL, 3 NXDOMAIN, …
        public var rcode: UInt8
        /// TC: the answer did not fit in the UDP message.
        public var truncated: Bool
        /// The addresses of the asked type, reached from the name through CNAMEs: 4 or 16 bytes each.
        public var addresses: [[UInt8]]
        /// The smallest TTL of the records used (the CNAMEs and the addresses), in seconds;
        /// nil when there are none.
        public var ttl: UInt32?
    }

    public struct Malformed: Error, Sendable, Equatable, CustomStringConvertible {
        public let description: String
        init(_ description: String) { self.description = description }
    }

    /// The labels of `name` (a trailing dot allowed), lowercased; throws for an empty
    /// label, one over 63 bytes, a name over 253 bytes or a byte outside printable ASCII.
    public static func labels(of name: String) throws(Malformed) -> [[UInt8]] {
        var text = Array(name.utf8)
        if text.last == UInt8(ascii: ".") { text.removeLast() }
        guard !text.isEmpty, text.count <= 253 else { throw Malformed("name \"\(name)\" is empty or longer than 253 bytes") }
        var labels: [[UInt8]] = []
        for label in text.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false) {
            guard (1...63).contains(label.count), label.allSatisfy({ (0x21...0x7e).contains($0) }) else {
                throw Malformed("name \"\(name)\" has an empty, over-long or non-printable label")
            }
            labels.append(label.map(lowercase))
        }
        return labels
    }

    /// A standard query (RD set) for `name` and `type`, class IN.
    public static func query(id: UInt16, name: String, type: RecordType) throws(Malformed) -> [UInt8] {
        var out: [UInt8] = [UInt8(id >> 8), UInt8(id & 0xff), 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]
        for label in try labels(of: name) {
            out.append(UInt8(label.count))
            out += label
        }
        out += [0, UInt8(type.rawValue >> 8), UInt8(type.rawValue & 0xff), 0, 1]
        return out
    }

    /// Reads the answer to the query `id` for `name` and `type`.
    public static func parse(_ bytes: [UInt8], id: UInt16, name: String, type: RecordType) throws(Malformed) -> Answer {
        guard bytes.count <= maximumSize else { throw Malformed("message of \(bytes.count) bytes, over \(maximumSize)") }
        guard bytes.count >= 12 else { throw Malformed("message of \(bytes.count) bytes, shorter than a header") }
        var reader = Reader(bytes: bytes)
        let gotID = try reader.u16()
        guard gotID == id else { throw Malformed("answer to another query (id \(gotID), not \(id))") }
        let flags = try reader.u16()
        guard flags & 0x8000 != 0 else { throw Malformed("not a response (QR clear)") }
        guard (flags >> 11) & 0xf == 0 else { throw Malformed("not a standard query response (opcode \((flags >> 11) & 0xf))") }
        let rcode = UInt8(flags & 0xf)
        let truncated = flags & 0x0200 != 0
        let questions = try reader.u16()
        let answers = Int(try reader.u16())
        _ = try reader.u16()  // authority
        _ = try reader.u16()  // additional
        guard questions == 1 else { throw Malformed("\(questions) questions in the answer, not 1") }
        guard answers <= maximumRecords else { throw Malformed("\(answers) answer records, over \(maximumRecords)") }
        let asked = try labels(of: name)
        let question = try reader.name()
        let qtype = try reader.u16()
        let qclass = try reader.u16()
        guard question == asked, qtype == type.rawValue, qclass == 1 else {
            throw Malformed("the answer is for another question")
        }
        var result = Answer(rcode: rcode, truncated: truncated, addresses: [], ttl: nil)
        // A truncated UDP answer may stop anywhere: it is not read further (the caller asks
        // another way); an error carries no records.
        if truncated || rcode != 0 { return result }
        var records: [(owner: [[UInt8]], type: UInt16, ttl: UInt32, data: Range<Int>, target: [[UInt8]]?)] = []
        for _ in 0..<answers {
            let owner = try reader.name()
            let rtype = try reader.u16()
            let rclass = try reader.u16()
            var ttl = try reader.u32()
            if ttl > 0x7fff_ffff { ttl = 0 }  // RFC 2181 8: a TTL with the top bit set is 0
            let length = Int(try reader.u16())
            let start = reader.offset
            guard length <= bytes.count - start else { throw Malformed("a record's data runs past the end of the message") }
            var target: [[UInt8]]? = nil
            if rtype == RecordType.cname.rawValue && rclass == 1 {
                var inner = reader
                target = try inner.name()
                guard inner.offset == start + length else { throw Malformed("a CNAME record's length does not match its name") }
            }
            reader.offset = start + length
            guard rclass == 1 else { continue }
            records.append((owner, rtype, ttl, start..<(start + length), target))
        }
        // Follow the chain from the asked name: CNAMEs, then the addresses of the last name.
        var current = asked
        var ttl: UInt32? = nil
        var links = 0
        while let link = records.first(where: { $0.owner == current && $0.type == RecordType.cname.rawValue }) {
            links += 1
            guard links <= maximumCNAMEs, let target = link.target else { throw Malformed("a CNAME chain longer than \(maximumCNAMEs)") }
            ttl = min(ttl ?? link.ttl, link.ttl)
            current = target
        }
        let size = type == .a ? 4 : 16
        for record in records where record.owner == current && record.type == type.rawValue {
            guard record.data.count == size else { throw Malformed("an address record of \(record.data.count) bytes, not \(size)") }
            let address = Array(bytes[record.data])
            if !result.addresses.contains(address) { result.addresses.append(address) }
            ttl = min(ttl ?? record.ttl, record.ttl)
        }
        result.ttl = result.addresses.isEmpty ? nil : ttl
        return result
    }

    private static func lowercase(_ byte: UInt8) -> UInt8 {
        (0x41...0x5a).contains(byte) ? byte + 0x20 : byte
    }

    /// A cursor over a message that never reads past its end.
    struct Reader {
        let bytes: [UInt8]
        var offset = 0

        mutating func u16() throws(Malformed) -> UInt16 {
            guard offset + 2 <= bytes.count else { throw Malformed("message truncated at byte \(offset)") }
            defer { offset += 2 }
            return UInt16(bytes[offset]) << 8 | UInt16(bytes[offset + 1])
        }

        mutating func u32() throws(Malformed) -> UInt32 {
            let high = try u16()
            return UInt32(high) << 16 | UInt32(try u16())
        }

        /// A name, lowercased, following compression pointers. A pointer must point before
        /// the name it is part of, and each further one before the previous one's target (so
        /// there can be no loop); a name has at most 255 bytes.
        mutating func name() throws(Malformed) -> [[UInt8]] {
            var labels: [[UInt8]] = []
            var length = 1
            var position = offset
            var jumped = false
            var pointers = 0
            var limit = offset
            while true {
                guard position < bytes.count else { throw Malformed("name truncated at byte \(position)") }
                let byte = bytes[position]
                switch byte & 0xc0 {
                case 0xc0:
                    guard position + 1 < bytes.count else { throw Malformed("compression pointer truncated at byte \(position)") }
                    let target = Int(byte & 0x3f) << 8 | Int(bytes[position + 1])
                    guard target < limit else { throw Malformed("compression pointer at byte \(position) does not point backwards") }
                    limit = target
                    pointers += 1
                    guard pointers <= DNSMessage.maximumPointers else { throw Malformed("more than \(DNSMessage.maximumPointers) compression pointers in a name") }
                    if !jumped { offset = position + 2 }
                    jumped = true
                    position = target
                case 0x00:
                    let count = Int(byte)
                    if count == 0 {
                        if !jumped { offset = position + 1 }
                        return labels
                    }
                    guard position + 1 + count <= bytes.count else { throw Malformed("label truncated at byte \(position)") }
                    length += count + 1
                    guard length <= DNSMessage.maximumNameLength else { throw Malformed("a name longer than \(DNSMessage.maximumNameLength) bytes") }
                    labels.append(bytes[(position + 1)...(position + count)].map(DNSMessage.lowercase))
                    position += 1 + count
                default:
                    throw Malformed("unknown label type 0x\(String(byte, radix: 16)) at byte \(position)")
                }
            }
        }
    }
}
