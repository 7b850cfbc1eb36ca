import Foundation
import Testing

@testable import TLSGatePolicy

/// `[admin]`: listen (loopback unless allow_remote), allow_remote, control_socket.
@Suite struct AdminConfigTests {
    /// Loads `baseConfig` plus `admin` (the `[admin]` table's lines, from line 4 on) and
    /// returns the config and the diagnostics with the folder removed from paths.
    private func load(_ admin: String) throws -> (GatewayConfig?, [String]) {
        let directory = try Fixtures.folder(["tlsgate.toml": baseConfig + "\n[admin]\n" + admin + "\n"])
        defer { Fixtures.remove(directory) }
        try FileManager.default.createDirectory(atPath: directory + "/policies", withIntermediateDirectories: true)
        let (config, found) = GatewayConfigLoader.load(directory + "/tlsgate.toml")
        return (config, found.map { $0.description.replacingOccurrences(of: directory + "/", with: "") })
    }

    @Test func defaultsServeNoHTTPAndUseTheRunSocket() throws {
        let (config, found) = try load("")
        #expect(found == [])
        let admin = try #require(config).admin
        #expect(admin.listen == nil)
        #expect(admin.allowRemote == false)
        #expect(admin.controlSocket == "/run/tlsgate/control.sock")
    }

    @Test func loopbackListenIsTaken() throws {
        for (text, port) in [("127.0.0.1:9464", 9464), ("[::1]:9100", 9100), ("127.1.2.3:1", 1)] {
            let (config, found) = try load("listen = \"\(text)\"")
            #expect(found == [], "\(text)")
            let listen = try #require(config?.admin.listen)
            #expect(listen.port == UInt16(port))
            #expect(listen.isLoopback)
            #expect(listen.description == text)
        }
    }

    @Test func nonLoopbackListenIsRefusedWithItsLine() throws {
        let (config, found) = try load("listen = \"0.0.0.0:9464\"")
        #expect(config == nil)
        #expect(found.count == 1)
        #expect(found.first?.hasPrefix("tlsgate.toml:5: listen \"0.0.0.0:9464\" is not a loopback address") == true, "\(found)")
        #expect(found.first?.contains("allow_remote = true") == true)
    }

    @Test func nonLoopbackListenWithAllowRemote() throws {
        let (config, found) = try load("listen = \"[2001:db8::1]:9464\"\nallow_remote = true")
        #expect(found == [])
        #expect(config?.admin.listen == GatewayConfig.AdminAddress(address: IPAddress("2001:db8::1")!, port: 9464))
        #expect(config?.admin.allowRemote == true)
    }

    @Test func allowRemoteWithoutEffectWarns() throws {
        let (config, found) = try load("listen = \"127.0.0.1:9464\"\nallow_remote = true")
        #expect(config != nil)
        #expect(found.count == 1)
        #expect(found.first?.hasPrefix("tlsgate.toml:6: warning: allow_remote = true has no effect") == true, "\(found)")
    }

    @Test func badListenValues() throws {
        for text in ["9464", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:65536", "::1:9464", "[127.0.0.1]:9", "localhost:9464", "127.0.0.1:+9"] {
            let (config, found) = try load("listen = \"\(text)\"")
            #expect(config == nil, "\(text)")
            #expect(found.first?.hasPrefix("tlsgate.toml:5: listen \"\(text)\" is not an address and port") == true, "\(found)")
        }
        let (_, wrongType) = try load("listen = 9464")
        #expect(wrongType.first?.hasPrefix("tlsgate.toml:5: listen must be an \"ADDRESS:PORT\" string") == true, "\(wrongType)")
        let (_, flag) = try load("allow_remote = \"yes\"")
        #expect(flag.first?.hasPrefix("tlsgate.toml:5: allow_remote must be true or false") == true, "\(flag)")
    }

    @Test func controlSocketPath() throws {
        #expect(try load("control_socket = \"/tmp/x/control.sock\"").0?.admin.controlSocket == "/tmp/x/control.sock")
        let (none, noneFound) = try load("control_socket = \"\"")
        #expect(noneFound == [])
        #expect(none != nil && none?.admin.controlSocket == nil)
        let (_, relative) = try load("control_socket = \"control.sock\"")
        #expect(relative.first?.hasPrefix("tlsgate.toml:5: control_socket \"control.sock\" must be an absolute path") == true, "\(relative)")
        let long = "/" + String(repeating: "a", count: 107)
        let (_, tooLong) = try load("control_socket = \"\(long)\"")
        #expect(tooLong.first?.hasPrefix("tlsgate.toml:5: control_socket is 108 bytes long") == true, "\(tooLong)")
    }

    @Test func unknownAdminKeyIsReported() throws {
        let (config, found) = try load("port = 9464")
        #expect(config == nil)
        #expect(found.first?.contains("tlsgate.toml:5") == true, "\(found)")
    }
}
