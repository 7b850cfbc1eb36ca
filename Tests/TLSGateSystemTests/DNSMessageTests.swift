import Testing

@testable import TLSGateSystem

/// Answers built byte by byte, the way a nameserver (or an attacker on the path) could send them.
@Suite struct DNSMessageTests {
    /// The header and question of an answer to query `id` for `name`/`type`.
    func head(id: UInt16 = 0x1234, flags: UInt16 = 0x8180, answers: UInt16, name: String = "api.example.test", type: UInt16 = 1) -> [UInt8] {
        var out: [UInt8] = [UInt8(id >> 8), UInt8(id & 0xff), UInt8(flags >> 8), UInt8(flags & 0xff), 0, 1, 0, UInt8(answers), 0, 0, 0, 0]
        for label in name.split(separator: ".") {
            out.append(UInt8(label.utf8.count))
            out += Array(label.utf8)
        }
        out += [0, 0, UInt8(type), 0, 1]
        return out
    }

    /// A record whose owner is the question's name (a pointer to byte 12).
    func record(type: UInt16, ttl: UInt32, data: [UInt8], owner: [UInt8] = [0xc0, 12]) -> [UInt8] {
        owner + [0, UInt8(type), 0, 1] + [UInt8(ttl >> 24), UInt8((ttl >> 16) & 0xff), UInt8((ttl >> 8) & 0xff), UInt8(ttl & 0xff)]
            + [UInt8(data.count >> 8), UInt8(data.count & 0xff)] + data
    }

    func parse(_ bytes: [UInt8], type: DNSMessage.RecordType = .a) throws(DNSMessage.Malformed) -> DNSMessage.Answer {
        try DNSMessage.parse(bytes, id: 0x1234, name: "API.example.test.", type: type)
    }

    @Test func queryIsAStandardRecursiveQuestion() throws {
        let query = try DNSMessage.query(id: 0xbeef, name: "Api.Example.test", type: .aaaa)
        #expect(query == [0xbe, 0xef, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 3] + Array("api".utf8) + [7] + Array("example".utf8)
            + [4] + Array("test".utf8) + [0, 0, 28, 0, 1])
        #expect(throws: DNSMessage.Malformed.self) { try DNSMessage.query(id: 1, name: "a..b", type: .a) }
        #expect(throws: DNSMessage.Malformed.self) { try DNSMessage.query(id: 1, name: String(repeating: "a", count: 64) + ".test", type: .a) }
        #expect(throws: DNSMessage.Malformed.self) { try DNSMessage.query(id: 1, name: "", type: .a) }
        #expect(throws: DNSMessage.Malformed.self) { try DNSMessage.query(id: 1, name: "a b.test", type: .a) }
    }

    @Test func addressesAndTheSmallestTTL() throws {
        let bytes = head(answers: 2) + record(type: 1, ttl: 300, data: [198, 19, 0, 40]) + record(type: 1, ttl: 60, data: [198, 19, 0, 41])
        let answer = try parse(bytes)
        #expect(answer.rcode == 0)
        #expect(answer.addresses == [[198, 19, 0, 40], [198, 19, 0, 41]])
        #expect(answer.ttl == 60)
    }

    @Test func cnameChainIsFollowedAndItsTTLCounts() throws {
        // api.example.test CNAME edge.test (at byte 12 + 18 + 12 = the CNAME's data), edge.test A.
        var bytes = head(answers: 2)
        let edge: [UInt8] = [4] + Array("edge".utf8) + [4] + Array("test".utf8) + [0]
        let cnameDataAt = bytes.count + 12
        bytes += record(type: 5, ttl: 20, data: edge)
        bytes += record(type: 1, ttl: 3600, data: [198, 19, 0, 42], owner: [0xc0, UInt8(cnameDataAt)])
        let answer = try parse(bytes)
        #expect(answer.addresses == [[198, 19, 0, 42]])
        #expect(answer.ttl == 20)
    }

    @Test func recordsOfOtherNamesTypesAndClassesAreIgnored() throws {
        var bytes = head(answers: 3)
        bytes += record(type: 28, ttl: 5, data: Array(repeating: 1, count: 16))  // AAAA to an A question
        bytes += [4] + Array("evil".utf8) + [0] + [0, 1, 0, 1, 0, 0, 0, 1, 0, 4, 6, 6, 6, 6]  // another owner
        bytes += record(type: 1, ttl: 90, data: [198, 19, 0, 43])
        let answer = try parse(bytes)
        #expect(answer.addresses == [[198, 19, 0, 43]])
        #expect(answer.ttl == 90)
    }

    @Test func errorsAndNoData() throws {
        #expect(try parse(head(flags: 0x8183, answers: 0)).rcode == 3)  // NXDOMAIN
        #expect(try parse(head(flags: 0x8182, answers: 0)).rcode == 2)  // SERVFAIL
        let empty = try parse(head(answers: 0))
        #expect(empty.addresses.isEmpty && empty.ttl == nil)
        #expect(try parse(head(flags: 0x8380, answers: 1)).truncated)
        // A TTL with the top bit set counts as 0 (RFC 2181).
        #expect(try parse(head(answers: 1) + record(type: 1, ttl: 0x8000_0000, data: [198, 19, 0, 1])).ttl == 0)
    }

    @Test func anotherQuestionOrQueryIsRefused() {
        let good = head(answers: 1) + record(type: 1, ttl: 60, data: [198, 19, 0, 40])
        #expect(throws: DNSMessage.Malformed.self) { try DNSMessage.parse(good, id: 0x1235, name: "api.example.test", type: .a) }
        #expect(throws: DNSMessage.Malformed.self) { try DNSMessage.parse(good, id: 0x1234, name: "www.example.test", type: .a) }
        #expect(throws: DNSMessage.Malformed.self) { try DNSMessage.parse(good, id: 0x1234, name: "api.example.test", type: .aaaa) }
        var query = good
        query[2] = 0x01  // QR clear: a query, not an answer
        #expect(throws: DNSMessage.Malformed.self) { try parse(query) }
        var twoQuestions = good
        twoQuestions[5] = 2
        #expect(throws: DNSMessage.Malformed.self) { try parse(twoQuestions) }
    }

    @Test func truncatedMessagesAreRefusedAtEveryLength() {
        let good = head(answers: 1) + record(type: 1, ttl: 60, data: [198, 19, 0, 40])
        #expect((try? parse(good)) != nil)
        for length in 0..<good.count {
            #expect(throws: DNSMessage.Malformed.self, "cut at \(length)") { try parse(Array(good[0..<length])) }
        }
    }

    @Test func malformedRecords() {
        // An A record of 5 bytes.
        #expect(throws: DNSMessage.Malformed.self) { try parse(head(answers: 1) + record(type: 1, ttl: 60, data: [1, 2, 3, 4, 5])) }
        // rdlength past the end.
        var long = head(answers: 1) + record(type: 1, ttl: 60, data: [1, 2, 3, 4])
        long[long.count - 5] = 0xff
        #expect(throws: DNSMessage.Malformed.self) { try parse(long) }
        // A label type 0x40 (extended labels) and a CNAME whose name does not fill its data.
        #expect(throws: DNSMessage.Malformed.self) { try parse(head(answers: 1) + [0x40, 0]) }
        #expect(throws: DNSMessage.Malformed.self) { try parse(head(answers: 1) + record(type: 5, ttl: 60, data: [1, 0x61, 0, 9])) }
    }

    @Test func compressionLoopsAndForwardPointersAreRefused() {
        let start = head(answers: 1).count
        // A pointer to itself, one forward, and two pointing at each other.
        let selfLoop = head(answers: 1) + record(type: 1, ttl: 60, data: [1, 2, 3, 4], owner: [0xc0, UInt8(start)])
        #expect(throws: DNSMessage.Malformed.self) { try parse(selfLoop) }
        let forward = head(answers: 1) + record(type: 1, ttl: 60, data: [1, 2, 3, 4], owner: [0xc0, UInt8(start + 4)])
        #expect(throws: DNSMessage.Malformed.self) { try parse(forward) }
        // A CNAME whose data is a label then a pointer back to that label: "a" -> "a" -> …
        let cnameAt = start + 12
        let loop = head(answers: 1) + record(type: 5, ttl: 60, data: [1, 0x61, 0xc0, UInt8(cnameAt)])
        #expect(throws: DNSMessage.Malformed.self) { try parse(loop) }
    }

    @Test func oversizedMessagesNamesAndCounts() {
        let huge = head(answers: 1) + record(type: 1, ttl: 60, data: [1, 2, 3, 4]) + Array(repeating: 0, count: 70_000)
        #expect(throws: DNSMessage.Malformed.self) { try parse(huge) }
        var many = head(answers: 1)
        many[6] = 0x01  // 257 answers
        many[7] = 0x01
        #expect(throws: DNSMessage.Malformed.self) { try parse(many) }
        // A CNAME target of five 60-byte labels: 306 bytes, over the 255-byte bound.
        var bytes = head(answers: 1)
        var data: [UInt8] = []
        for _ in 0..<5 { data += [60] + Array(repeating: 0x61, count: 60) }
        data += [0]
        bytes += record(type: 5, ttl: 60, data: data)
        #expect(throws: DNSMessage.Malformed.self) { try parse(bytes) }
    }

    @Test func chainsLongerThanTheBoundAreRefused() {
        // Nine CNAMEs: c0 -> c1 -> ... each a full name, then nothing.
        var bytes = head(answers: 9)
        var owner: [UInt8] = [0xc0, 12]
        for i in 0..<9 {
            let target: [UInt8] = [2, 0x63, UInt8(0x30 + i), 0]
            let dataAt = bytes.count + owner.count + 10
            bytes += record(type: 5, ttl: 60, data: target, owner: owner)
            owner = [0xc0, UInt8(dataAt)]
        }
        #expect(throws: DNSMessage.Malformed.self) { try parse(bytes) }
    }

    @Test func resolvConfAndHostsFiles() {
        let conf = DNSStubResolver.Configuration.parse(
            "# comment\nsearch lab.test\nnameserver 198.19.0.53\nnameserver fe80::1%eth0\nnameserver 2001:2:0:1::53\n"
                + "nameserver 198.19.0.54\nnameserver 198.19.0.55\noptions timeout:30 attempts:9 ndots:2\n")
        #expect(conf.nameservers == ["198.19.0.53", "2001:2:0:1::53", "198.19.0.54"])
        #expect(conf.timeout == 3000 && conf.attempts == 2)
        #expect(DNSStubResolver.Configuration.parse("").nameservers.isEmpty)
        let hosts = "127.0.0.1 localhost\n198.19.0.21 origin.test www  # comment\n198.19.0.22\tORIGIN.test.\n# 198.19.0.23 origin.test\nbad origin.test\n"
        #expect(HostsFile.addresses(of: "origin.test", in: hosts) == ["198.19.0.21", "198.19.0.22"])
        #expect(HostsFile.addresses(of: "other.test", in: hosts) == [])
    }

    @Test func noNameserverIsAnErrorNotAHang() {
        #expect(throws: SystemError.self) {
            try DNSStubResolver.resolve("api.example.test", configuration: .init(nameservers: []))
        }
    }
}
