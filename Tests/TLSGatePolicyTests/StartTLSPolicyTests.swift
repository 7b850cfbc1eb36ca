import Foundation
import Testing

@testable import TLSGatePolicy

/// `[upstream] starttls`: accepted values, the same-port rule, and the exact messages.
@Suite struct StartTLSPolicyTests {
    private func policy(matchPort: Int = 25, upstreamPort: Int = 25, _ upstreamLines: String) -> String {
        """
        [match]
        networks = ["203.0.113.0/24"]
        port = \(matchPort)

        [upstream]
        port = \(upstreamPort)
        server_name = "mail.example.com"
        \(upstreamLines)
        """
    }

    @Test func everyProtocolIsAcceptedOnItsSamePort() throws {
        for (name, port) in [("smtp", 25), ("smtp", 587), ("imap", 143), ("pop3", 110), ("ldap", 389), ("postgres", 5432), ("postgres-direct", 5432),
            ("mysql", 3306), ("SMTP", 25),
        ] {
            let text = policy(matchPort: port, upstreamPort: port, "starttls = \"\(name)\"")
            #expect(try diagnostics(text) == [], "\(name)")
            let directory = try Fixtures.folder(["p.toml": text])
            defer { Fixtures.remove(directory) }
            let loaded = try #require(PolicyLoader.loadFile(directory + "/p.toml").0)
            #expect(loaded.upstream.starttls == StartTLSProtocol(rawValue: name.lowercased()))
            #expect(loaded.upstream.port == UInt16(port))
        }
    }

    @Test func ehloNameIsAHostNameForSMTPOnly() throws {
        let text = policy("starttls = \"smtp\"\nehlo_name = \"Gateway.Example.COM\"")
        #expect(try diagnostics(text) == [])
        let directory = try Fixtures.folder(["p.toml": text])
        defer { Fixtures.remove(directory) }
        let loaded = try #require(PolicyLoader.loadFile(directory + "/p.toml").0)
        #expect(loaded.upstream.ehloName == "gateway.example.com")
        #expect(try diagnostics(policy(matchPort: 143, upstreamPort: 143, "starttls = \"imap\"\nehlo_name = \"gw.example.com\"")) == [
            "p.toml:9: ehlo_name is the name the gateway gives in SMTP's EHLO: it needs starttls = \"smtp\"; remove it"
        ])
        let bad = try diagnostics(policy("starttls = \"smtp\"\nehlo_name = \"gw example\""))
        #expect(bad.count == 1 && bad[0].hasPrefix("p.toml:9: ehlo_name \"gw example\" is not a host name: "), "\(bad)")
        #expect(try diagnostics(policy("starttls = \"smtp\"\nehlo_name = 7")) == [
            "p.toml:9: ehlo_name must be a string (a host name such as \"gateway.example.com\"), got an integer"
        ])
    }

    @Test func withoutStarttlsTheSamePortStillWarns() throws {
        #expect(try diagnostics(policy("")) == [
            "p.toml:6: warning: upstream port 25 is also the match port: clients dialing it probably speak TLS already"
        ])
    }

    @Test func unknownProtocolIsAnErrorNamingTheChoices() throws {
        #expect(try diagnostics(policy("starttls = \"xmpp\"")) == [
            "p.toml:8: starttls \"xmpp\" is not a protocol tlsgate can upgrade; use one of \"smtp\", \"imap\", \"pop3\", \"ldap\", \"postgres\", \"postgres-direct\", \"mysql\", or remove the key for direct TLS"
        ])
        #expect(try diagnostics(policy("starttls = true")) == [
            "p.toml:8: starttls must be a string (one of \"smtp\", \"imap\", \"pop3\", \"ldap\", \"postgres\", \"postgres-direct\", \"mysql\"), got a boolean"
        ])
    }

    @Test func httpHostAndHTTP502DoNotMix() throws {
        let text = """
            [match]
            networks = ["203.0.113.0/24"]
            port = 25

            [upstream]
            port = 25
            server_name = "http-host"
            allowed_names = ["a.example"]
            starttls = "smtp"
            """
        #expect(try diagnostics(text) == [
            "p.toml:9: starttls = \"smtp\" cannot be used with server_name = \"http-host\" (that is for HTTP): set the server's name"
        ])
        let lines = try diagnostics(policy("starttls = \"imap\"\non_failure = \"http-502\""))
        #expect(lines.contains(
            "p.toml:9: on_failure = \"http-502\" answers in HTTP, but this policy speaks IMAP: use \"close\" (the client gets the protocol's own refusal) or \"reset\""))
    }

    @Test func anUnusualPortWarns() throws {
        #expect(try diagnostics(policy(matchPort: 2143, upstreamPort: 143, "starttls = \"imap\"")) == [
            "p.toml:8: warning: starttls = \"imap\" usually runs on port 143, but match port is 2143"
        ])
    }

    @Test func postgresDirectOwnsALPN() throws {
        let base = policy(matchPort: 5432, upstreamPort: 5432, "starttls = \"postgres-direct\"")
        #expect(try diagnostics(base + "\n[tls]\nalpn = [\"postgresql\"]\n") == [])
        #expect(try diagnostics(base + "\n[tls]\nalpn = [\"h2\"]\n") == [
            "p.toml:10: starttls = \"postgres-direct\" offers and requires ALPN \"postgresql\" itself: remove [tls] alpn, or set it to [\"postgresql\"]"
        ])
    }
}
