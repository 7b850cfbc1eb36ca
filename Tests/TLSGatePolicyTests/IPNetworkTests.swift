import Foundation
import Testing

@testable import TLSGatePolicy

@Suite struct IPNetworkTests {
    private func address(_ text: String) throws -> IPAddress { try #require(IPAddress(text)) }
    private func network(_ text: String) throws -> IPNetwork { try #require(IPNetwork(text)) }

    @Test func parsesAddresses() throws {
        #expect(try address("203.0.113.7").bytes == [203, 0, 113, 7])
        #expect(try address("203.0.113.7").isIPv4)
        #expect(try address("2001:db8::1").bytes.count == 16)
        #expect(try address("2001:DB8:0::1").description == "2001:db8::1")
        #expect(try address("::ffff:203.0.113.7").isIPv4Mapped)
        #expect(try address("::ffff:203.0.113.7").unmapped.description == "203.0.113.7")
        for bad in ["", "203.0.113", "203.0.113.256", "203.0.113.07", " 203.0.113.7", "fe80::1%eth0", "[::1]", "host"] {
            #expect(IPAddress(bad) == nil, "\(bad) should not parse")
        }
    }

    @Test func parsesNetworksAndBareAddresses() throws {
        #expect(try network("203.0.113.0/24").description == "203.0.113.0/24")
        #expect(try network("203.0.113.7").description == "203.0.113.7/32")
        #expect(try network("2001:db8::/32").prefixLength == 32)
        #expect(try network("2001:db8::1").description == "2001:db8::1/128")
        #expect(try network("0.0.0.0/0").prefixLength == 0)
    }

    @Test func rejectsBadNetworksWithReasons() {
        func reason(_ text: String) -> String {
            do {
                _ = try IPNetwork.parse(text)
                return "parsed"
            } catch {
                return error.description
            }
        }
        #expect(
            reason("203.0.113.7/24")
                == #""203.0.113.7/24" has host bits set: did you mean "203.0.113.0/24" (or "203.0.113.7/32" for one address)?"#)
        #expect(
            reason("2001:db8::1/32")
                == #""2001:db8::1/32" has host bits set: did you mean "2001:db8::/32" (or "2001:db8::1/128" for one address)?"#)
        #expect(reason("203.0.113.0/33") == #""203.0.113.0/33" has a bad prefix length: use 0 to 32 for IPv4"#)
        #expect(reason("203.0.113.0/") == #""203.0.113.0/" has a bad prefix length: use 0 to 32 for IPv4"#)
        #expect(reason("203.0.113.0/024") == #""203.0.113.0/024" has a bad prefix length: use 0 to 32 for IPv4"#)
        #expect(reason("2001:db8::/129") == #""2001:db8::/129" has a bad prefix length: use 0 to 128 for IPv6"#)
        #expect(reason("203.0.113.0/2x") == #""203.0.113.0/2x" has a bad prefix length: use 0 to 32 for IPv4"#)
        #expect(reason("example.com/24") == #""example.com/24" is not an IP address or network"#)
        #expect(IPNetwork("203.0.113.7/24") == nil)
        #expect((try? IPNetwork.parse("10.1.2.3/8")) == nil)
    }

    @Test func hostBitsSuggestion() throws {
        do {
            _ = try IPNetwork.parse("10.1.2.3/8")
            Issue.record("should have thrown")
        } catch {
            #expect(error.suggestion == IPNetwork("10.0.0.0/8"))
        }
    }

    @Test func containsIPv4AndIPv6() throws {
        let v4 = try network("203.0.113.0/24")
        #expect(v4.contains(try address("203.0.113.0")))
        #expect(v4.contains(try address("203.0.113.255")))
        #expect(!v4.contains(try address("203.0.114.0")))
        #expect(!v4.contains(try address("2001:db8::1")))
        let odd = try network("198.51.100.128/25")
        #expect(odd.contains(try address("198.51.100.200")))
        #expect(!odd.contains(try address("198.51.100.127")))
        let v6 = try network("2001:db8::/32")
        #expect(v6.contains(try address("2001:db8:ffff::1")))
        #expect(!v6.contains(try address("2001:db9::1")))
        #expect(!v6.contains(try address("203.0.113.7")))
        #expect(try network("0.0.0.0/0").contains(try address("192.0.2.1")))
        #expect(!(try network("::/0")).contains(try address("192.0.2.1")), "IPv6 any does not cover IPv4")
    }

    @Test func mappedAddressesCountAsIPv4() throws {
        let v4 = try network("203.0.113.0/24")
        #expect(v4.contains(try address("::ffff:203.0.113.7")))
        #expect(!v4.contains(try address("::ffff:203.0.114.7")))
        let mapped = try network("::ffff:203.0.113.0/120")
        #expect(mapped.isIPv4)
        #expect(mapped.contains(try address("203.0.113.9")))
        #expect(mapped.overlaps(v4))
        #expect(v4.overlaps(mapped))
        #expect(!(try network("::/0")).contains(try address("::ffff:203.0.113.7")))
    }

    @Test func overlapIsAnyCommonAddress() throws {
        let a = try network("203.0.113.0/24")
        #expect(a.overlaps(try network("203.0.113.128/25")))
        #expect(try network("203.0.113.128/25").overlaps(a))
        #expect(a.overlaps(try network("203.0.0.0/16")))
        #expect(a.overlaps(try network("203.0.113.5")))
        #expect(!a.overlaps(try network("203.0.112.0/24")))
        #expect(!a.overlaps(try network("2001:db8::/32")))
        #expect(try network("2001:db8::/32").overlaps(try network("2001:db8:1::/48")))
        #expect(!(try network("2001:db8::/48")).overlaps(try network("2001:db8:1::/48")))
        #expect(a.contains(try network("203.0.113.128/25")))
        #expect(!(try network("203.0.113.128/25")).contains(a))
    }

    @Test func codableAsText() throws {
        let value = [try network("203.0.113.0/24"), try network("2001:db8::/32")]
        let json = try JSONEncoder().encode(value)
        #expect(String(decoding: json, as: UTF8.self) == #"["203.0.113.0\/24","2001:db8::\/32"]"#)
        #expect(try JSONDecoder().decode([IPNetwork].self, from: json) == value)
        #expect(throws: DecodingError.self) {
            try JSONDecoder().decode([IPNetwork].self, from: Data(#"["203.0.113.7/24"]"#.utf8))
        }
        let address = try address("::ffff:203.0.113.7")
        #expect(try JSONDecoder().decode(IPAddress.self, from: JSONEncoder().encode(address)) == address)
    }
}
