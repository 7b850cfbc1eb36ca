import Foundation
import Testing

@testable import TLSGatePolicy

private func text(_ policies: [Policy]) -> String {
    String(decoding: (try? JSONEncoder().encode(policies)) ?? Data(), as: UTF8.self)
}

@Suite struct PolicyModelTests {
    @Test func codableRoundTrip() throws {
        let result = PolicyLoader.loadDirectory(Fixtures.valid)
        let policies = result.policies + PolicyLoader.loadDirectory(Fixtures.shippedPolicies).policies
        #expect(policies.count == 13)
        #expect(text(policies).contains(#""starttls":"postgres""#))
        #expect(text(policies).contains(#""starttls":"postgres-direct""#) && text(policies).contains(#""starttls":"mysql""#))
        let json = try JSONEncoder().encode(policies)
        let decoded = try JSONDecoder().decode([Policy].self, from: json)
        #expect(decoded == policies)
        let text = String(decoding: json, as: UTF8.self)
        #expect(text.contains(#""networks":["203.0.113.0\/24","2001:db8::\/32"]"#))
        #expect(text.contains(#""minVersion":"1.2""#))
    }

    @Test func summaryLines() throws {
        let result = PolicyLoader.loadDirectory(Fixtures.valid)
        #expect(result.summaryLines == [
            "full     match 203.0.113.0/24,2001:db8::/32,api.example.com port 80 -> upstream port 443, name api.example.com, trust system + \(Fixtures.valid)/certs/ca.pem, TLS 1.2-1.3, deny direct",
            "minimal  match www.example.org port 8080 -> upstream port 8443, name from HTTP Host (allowed: www.example.org), trust system, TLS >= 1.2",
            "2 policies OK",
        ])
    }

    @Test func summaryLineMatchesTheDocumentedShape() {
        let policy = Policy(
            name: "http-example", sourcePath: "Policies/http-example.toml",
            match: MatchRule(networks: [IPNetwork("203.0.113.0/24")!], hosts: [], port: 80),
            upstream: UpstreamRule(port: 443, serverName: .fixed("api.example.com")))
        #expect(
            policy.summaryLine()
                == "http-example  match 203.0.113.0/24 port 80 -> upstream port 443, name api.example.com, trust system, TLS >= 1.2")
        #expect(PolicyLoadResult(policies: [policy], diagnostics: []).summaryLines.last == "1 policy OK")
        let tls13 = Policy(
            name: "x", sourcePath: "x.toml", match: policy.match, upstream: policy.upstream,
            tls: TLSRule(trustSystem: false, caFiles: ["/ca.pem"], minVersion: .tls1_3, maxVersion: .tls1_3))
        #expect(tls13.summaryLine().hasSuffix("trust /ca.pem, TLS 1.3"))
    }

    @Test func errorSummaryCountsFiles() {
        let result = PolicyLoadResult(
            policies: [],
            diagnostics: [
                .error("a.toml", 1, "x"), .error("a.toml", 2, "y"), .warning("b.toml", 1, "z"), .error("c.toml", nil, "w"),
            ])
        #expect(result.hasErrors)
        #expect(result.errors.count == 3)
        #expect(result.warnings.count == 1)
        #expect(result.errorSummaryLine == "3 error(s) in 2 file(s)")
        #expect(!PolicyLoadResult(policies: [], diagnostics: [.warning("b.toml", 1, "z")]).hasErrors)
    }
}
