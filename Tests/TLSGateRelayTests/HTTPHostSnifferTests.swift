import Testing

@testable import TLSGateRelay

@Suite struct HTTPHostSnifferTests {
    func sniff(_ text: String, max: Int = 8192, byteByByte: Bool = false) -> HTTPHostSniffer.Result {
        var sniffer = HTTPHostSniffer(maxBytes: max)
        if byteByByte {
            var last = HTTPHostSniffer.Result.needMore
            for byte in text.utf8 {
                last = sniffer.feed([byte])
                if last != .needMore { break }
            }
            return last
        }
        return sniffer.feed(Array(text.utf8))
    }

    @Test(arguments: [false, true])
    func findsTheHost(byteByByte: Bool) {
        #expect(sniff("GET / HTTP/1.1\r\nHost: API.Example.com:8080\r\nAccept: */*\r\n\r\n", byteByByte: byteByByte) == .host("api.example.com"))
        #expect(sniff("POST /x HTTP/1.0\nhost: a.test\n\n", byteByByte: byteByByte) == .host("a.test"))
        #expect(sniff("GET / HTTP/1.1\r\nHost: [2001:DB8::1]:80\r\n\r\n", byteByByte: byteByByte) == .host("2001:db8::1"))
    }

    @Test func waitsForTheWholeHead() {
        #expect(sniff("GET / HTTP/1.1\r\nHost: a.test\r\n") == .needMore)
    }

    @Test func refusesWhatItCannotRoute() {
        #expect(sniff("GET / HTTP/1.1\r\n\r\n") == .bad("missing Host header"))
        #expect(sniff("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n") == .bad("more than one Host header"))
        #expect(sniff("GET / HTTP/1.1\r\nHost: a_b.test\r\n\r\n") == .bad("Host header \"a_b.test\" is not a host name"))
        #expect(sniff("GET / HTTP/1.1\r\nHost: a.test:http\r\n\r\n") == .bad("malformed Host header"))
        #expect(sniff("GET / SPDY/3\r\nHost: a.test\r\n\r\n") == .bad("not an HTTP/1.x request line"))
        #expect(sniff("\u{16}\u{03}\u{01}\u{02}\u{00} hello") == .bad(HTTPHostSniffer.clientHello))
        #expect(sniff("\u{01}\u{02} hello") == .bad("not an HTTP request"))
        #expect(sniff("GET / HTTP/1.1\r\nHost: a.test\r\nX: " + String(repeating: "y", count: 600), max: 512)
            == .bad("request head larger than 512 bytes"))
    }

    /// Found by the http-host fuzz target: a 48-byte method was refused when it arrived in
    /// small reads (no space in the first 16 bytes) and waited for more when it arrived whole.
    /// The verdict must not depend on how the request was split.
    @Test(arguments: [false, true])
    func verdictDoesNotDependOnTheSplit(byteByByte: Bool) {
        let longMethod = "H" + String(repeating: "^", count: 44) + "EL6O THERE\n\r\r\n"
        #expect(sniff(longMethod, byteByByte: byteByByte) == .bad("not an HTTP request"))
        let tooLong = String(repeating: "A", count: HTTPHostSniffer.methodLimit) + " / HTTP/1.1\r\nHost: a.test\r\n\r\n"
        #expect(sniff(tooLong, byteByByte: byteByByte) == .bad(byteByByte ? "not an HTTP request" : "not an HTTP/1.x request line"))
        // The longest registered method (17 bytes) is still routed, however it arrives.
        #expect(sniff("UPDATEREDIRECTREF / HTTP/1.1\r\nHost: a.test\r\n\r\n", byteByByte: byteByByte) == .host("a.test"))
    }

    @Test func allowedNames() {
        let patterns = ["api.example.com", "*.cdn.example.com"]
        #expect(HTTPHostSniffer.isAllowed("api.example.com", by: patterns))
        #expect(HTTPHostSniffer.isAllowed("img.cdn.example.com", by: patterns))
        #expect(!HTTPHostSniffer.isAllowed("cdn.example.com", by: patterns))
        #expect(!HTTPHostSniffer.isAllowed("a.img.cdn.example.com", by: patterns))
        #expect(!HTTPHostSniffer.isAllowed("evilapi.example.com", by: patterns))
        #expect(!HTTPHostSniffer.isAllowed("xcdn.example.com", by: patterns))
    }
}
