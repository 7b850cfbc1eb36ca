import NIOCore
import TLSGatePolicy
import TLSGateTLS
import Testing

@testable import TLSGateRelay

/// How addresses appear in the connection lines (`client`, `dst`, `upstream`).
@Suite struct SocketAddressLogTextTests {
    @Test func ipv4IsDottedQuadAndPort() throws {
        #expect(try SocketAddress(ipAddress: "198.19.0.10", port: 443).logText == "198.19.0.10:443")
        #expect(try SocketAddress(ipAddress: "0.0.0.0", port: 0).logText == "0.0.0.0:0")
        #expect(try SocketAddress(ipAddress: "255.254.1.128", port: 65535).logText == "255.254.1.128:65535")
        #expect(try SocketAddress(ipAddress: "10.200.3.4", port: 8080).logText == "10.200.3.4:8080")
    }

    @Test func ipv6IsBracketed() throws {
        #expect(try SocketAddress(ipAddress: "2001:2::10", port: 443).logText == "[2001:2::10]:443")
        #expect(try SocketAddress(ipAddress: "::1", port: 80).logText == "[::1]:80")
    }

    @Test func ipv4MappedIsPlainIPv4() throws {
        #expect(try SocketAddress(ipAddress: "::ffff:198.18.0.2", port: 51234).logText == "198.18.0.2:51234")
    }

    /// The IPv4 text is inet_ntop's (what `ipAddress` gives) for every byte value.
    @Test func ipv4MatchesInetNtopForEveryByte() throws {
        for byte in 0...255 {
            let text = "\(byte).\(255 - byte).\(byte / 2).\(byte % 7)"
            let address = try SocketAddress(ipAddress: text, port: byte * 257)
            #expect(address.logText == "\(address.ipAddress!):\(address.port!)")
            #expect(address.logText == "\(text):\(byte * 257)")
        }
    }
}

/// Addresses between NIO's socket addresses and the policy's `IPAddress`, by their bytes.
@Suite struct SocketAddressIPAddressTests {
    @Test(arguments: ["198.19.0.10", "0.0.0.0", "255.255.255.255", "2001:2::10", "::1", "::ffff:198.18.0.2", "fe80::1"])
    func bytesMatchTheText(text: String) throws {
        let socket = try SocketAddress(ipAddress: text, port: 8443)
        let ip = try #require(IPAddress(socket))
        #expect(ip == IPAddress(text))
        #expect(ip.description == socket.ipAddress)
        let back = SocketAddress(ip, port: 8443)
        #expect(back == socket)
        #expect(back.ipAddress == socket.ipAddress)
        #expect(back.port == 8443)
    }

    @Test func ipv4TextIsInetNtops() {
        for value in stride(from: UInt32(0), through: UInt32.max - 9_999_991, by: 9_999_991) {
            let bytes = withUnsafeBytes(of: value.bigEndian) { Array($0) }
            let ip = IPAddress(bytes: bytes)!
            #expect(ip.description == (try? SocketAddress(packedIPAddress: ByteBuffer(bytes: bytes), port: 0).ipAddress))
        }
    }

    @Test func aUnixSocketAddressHasNoIPAddress() throws {
        #expect(IPAddress(try SocketAddress(unixDomainSocketPath: "/tmp/x.sock")) == nil)
    }
}

/// The name the server's certificate must carry, and the session cache's key.
@Suite struct UpstreamIdentityTests {
    let target = IPAddress("198.19.0.10")!

    @Test func aFixedNameIsADNSNameOrAnAddress() {
        #expect(WorkerShared.identity(serverName: .fixed("good.test"), target: target, requestedHost: "other.test") == .dnsName("good.test"))
        #expect(WorkerShared.identity(serverName: .fixed("198.19.0.11"), target: target, requestedHost: nil) == .ipAddress("198.19.0.11"))
        #expect(WorkerShared.identity(serverName: .fixed("2001:2::10"), target: target, requestedHost: nil) == .ipAddress("2001:2::10"))
    }

    @Test func httpHostTakesTheRequestsHostOrTheDestination() {
        #expect(WorkerShared.identity(serverName: .httpHost, target: target, requestedHost: "www.good.test") == .dnsName("www.good.test"))
        #expect(WorkerShared.identity(serverName: .httpHost, target: target, requestedHost: nil) == .ipAddress("198.19.0.10"))
        #expect(WorkerShared.identity(serverName: .httpHost, target: IPAddress("2001:2::10")!, requestedHost: nil) == .ipAddress("2001:2::10"))
    }

    @Test func theSessionKeyIsAddressPortAndName() {
        #expect(RelayConnection.sessionKey(address: target, port: 443, identity: .dnsName("good.test")) == "198.19.0.10:443|good.test")
        #expect(RelayConnection.sessionKey(address: IPAddress("2001:2::10")!, port: 8443, identity: .ipAddress("2001:2::10")) == "2001:2::10:8443|2001:2::10")
        // Different names for one address never share a session.
        #expect(RelayConnection.sessionKey(address: target, port: 443, identity: .dnsName("a.test")) != RelayConnection.sessionKey(address: target, port: 443, identity: .dnsName("b.test")))
    }
}
