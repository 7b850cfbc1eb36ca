import Foundation
import Testing

@testable import TLSGatePolicy

/// A valid config body that tests add to or change one line of.
let baseConfig = """
    policies = "policies"
    [intercept]
    from = ["198.18.0.0/24"]
    """

/// The config fixtures: `Tests/TLSGatePolicyTests/Fixtures/config`.
private var configFixtures: String { Fixtures.directory + "/config" }

/// Writes `text` as `tlsgate.toml` next to an empty `policies/` folder (plus `files`),
/// loads it, and returns the config and the diagnostics with the folder removed from
/// paths, e.g. `tlsgate.toml:3: ...`.
private func loadConfig(_ text: String, files: [String: String] = [:]) throws -> (GatewayConfig?, [String]) {
    let directory = try Fixtures.folder(files.merging(["tlsgate.toml": text]) { $1 })
    defer { Fixtures.remove(directory) }
    try FileManager.default.createDirectory(atPath: directory + "/policies", withIntermediateDirectories: true)
    let (config, found) = GatewayConfigLoader.load(directory + "/tlsgate.toml")
    return (config, found.map { $0.description.replacingOccurrences(of: directory + "/", with: "") })
}

/// Just the diagnostics of `loadConfig`.
private func configDiagnostics(_ text: String, files: [String: String] = [:]) throws -> [String] {
    try loadConfig(text, files: files).1
}

/// `baseConfig` with one line replaced (the line must be there).
private func replacing(_ old: String, with new: String) -> String {
    precondition(baseConfig.contains(old))
    return baseConfig.replacingOccurrences(of: old, with: new)
}

@Suite struct GatewayConfigTests {
    // MARK: - Valid files

    @Test func loadsFullConfig() throws {
        let path = configFixtures + "/full.toml"
        let (loaded, found) = GatewayConfigLoader.load(path)
        #expect(found == [])
        let config = try #require(loaded)
        #expect(config.sourcePath == path)
        #expect(config.policies == configFixtures + "/policies")
        #expect(config.user == "tlsgate")
        #expect(config.intercept.mode == .tproxy)
        #expect(config.intercept.from == [IPNetwork("198.18.0.0/24")!, IPNetwork("2001:2::/64")!])
        #expect(config.intercept.interfaces == ["lan0", "br-lan.10"])
        #expect(config.intercept.listen == IPAddress("::")!)
        #expect(config.intercept.tproxyMark == 0x10000)
        #expect(config.intercept.tproxyTable == 100)
        #expect(config.log.format == .json)
        #expect(config.log.level == "debug")
        #expect(config.workers.drainTimeout == .minutes(2))
        #expect(config.workers.restartDelay == TimeSpan(milliseconds: 500))
        #expect(config.workers.restartDelayMax == .minutes(1))
        #expect(config.workers.crashLimit == 10)
        #expect(config.workers.crashWindow == .minutes(5))
        #expect(config.workers.threads == 4)
    }

    @Test func minimalConfigGetsDefaults() throws {
        let (loaded, found) = GatewayConfigLoader.load(configFixtures + "/minimal.toml")
        #expect(found == [])
        let config = try #require(loaded)
        #expect(config.user == nil)
        #expect(config.intercept.mode == .redirect)
        #expect(config.intercept.from == [IPNetwork("198.18.0.0/24")!])
        #expect(config.intercept.interfaces == [])
        #expect(config.intercept.listen.description == "::")
        #expect(config.intercept.tproxyMark == 0x746c)
        #expect(config.intercept.tproxyTable == 7468)
        #expect(config.log.format == .text)
        #expect(config.log.level == "info")
        #expect(config.workers.drainTimeout == .seconds(30))
        #expect(config.workers.restartDelay == .seconds(0))
        #expect(config.workers.restartDelayMax == .seconds(5))
        #expect(config.workers.crashLimit == 5)
        #expect(config.workers.crashWindow == .seconds(60))
        #expect(config.workers.threads == 0)
    }

    @Test func interfacesAloneAndLocalModeAreEnough() throws {
        let (byInterface, found) = try loadConfig("policies = \"policies\"\n[intercept]\ninterfaces = [\"lan0\"]")
        #expect(found == [])
        #expect(byInterface?.intercept.interfaces == ["lan0"])
        #expect(byInterface?.intercept.from == [])
        let (local, localFound) = try loadConfig("policies = \"policies\"\n[intercept]\nmode = \"local\"")
        #expect(localFound == [])
        #expect(local?.intercept.mode == .local)
    }

    @Test func hexIntegers() throws {
        let (config, found) = try loadConfig(
            baseConfig + "\nmode = \"tproxy\"\ntproxy_mark = 0xFFFF_FFFF\ntproxy_table = 0x1d2c")
        #expect(found == [])
        #expect(config?.intercept.tproxyMark == UInt32.max)
        #expect(config?.intercept.tproxyTable == 7468)
        #expect(try configDiagnostics(baseConfig + "\nmode = \"tproxy\"\ntproxy_mark = 0x1_0000_0000") == [
            "tlsgate.toml:5: tproxy_mark must be between 0x1 and 0xffffffff, got 0x100000000"
        ])
        #expect(try configDiagnostics(baseConfig + "\nmode = \"tproxy\"\ntproxy_mark = 0") == [
            "tlsgate.toml:5: tproxy_mark must be between 0x1 and 0xffffffff, got 0x0"
        ])
        #expect(try configDiagnostics(baseConfig + "\nmode = \"tproxy\"\ntproxy_mark = 0xZZ") == [
            "tlsgate.toml:5: bad value \"0xZZ\": not a hexadecimal integer"
        ])
    }

    // MARK: - policies and user

    @Test func relativePoliciesPathIsTakenFromTheConfigFolder() throws {
        let directory = try Fixtures.makeTemporaryDirectory()
        defer { Fixtures.remove(directory) }
        let manager = FileManager.default
        try manager.createDirectory(atPath: directory + "/etc/policies", withIntermediateDirectories: true)
        try manager.createDirectory(atPath: directory + "/shared", withIntermediateDirectories: true)
        let files = [
            "etc/relative.toml": "policies = \"policies\"",
            "etc/dot.toml": "policies = \"./policies\"",
            "etc/parent.toml": "policies = \"../shared\"",
            "etc/absolute.toml": "policies = \"\(directory)/shared\"",
        ]
        for (name, body) in files {
            try (body + "\n[intercept]\ninterfaces = [\"lan0\"]\n").write(
                toFile: directory + "/" + name, atomically: false, encoding: .utf8)
        }
        #expect(GatewayConfigLoader.load(directory + "/etc/relative.toml").config?.policies == directory + "/etc/policies")
        #expect(GatewayConfigLoader.load(directory + "/etc/dot.toml").config?.policies == directory + "/etc/./policies")
        #expect(GatewayConfigLoader.load(directory + "/etc/parent.toml").config?.policies == directory + "/etc/../shared")
        #expect(GatewayConfigLoader.load(directory + "/etc/absolute.toml").config?.policies == directory + "/shared")
    }

    @Test func policiesErrors() throws {
        #expect(try configDiagnostics("[intercept]\nfrom = [\"198.18.0.0/24\"]") == [
            "tlsgate.toml:1: missing policies = \"DIR\": the folder of policy files"
        ])
        #expect(try configDiagnostics(replacing("policies = \"policies\"", with: "policies = 3")) == [
            "tlsgate.toml:1: policies must be a folder path, got an integer"
        ])
        #expect(try configDiagnostics(replacing("policies = \"policies\"", with: "policies = \"\"")) == [
            "tlsgate.toml:1: policies must be a folder path, got an empty string"
        ])
        #expect(try configDiagnostics(replacing("policies = \"policies\"", with: "policies = \"nope\"")) == [
            "tlsgate.toml:1: policies folder \"nope\" does not exist"
        ])
        #expect(try configDiagnostics(replacing("policies = \"policies\"", with: "policies = \"tlsgate.toml\"")) == [
            "tlsgate.toml:1: policies \"tlsgate.toml\" is not a folder"
        ])
        #expect(GatewayConfigLoader.load("no/such/tlsgate.toml").diagnostics.map(\.description) == [
            "no/such/tlsgate.toml: cannot read: No such file or directory"
        ])
    }

    @Test func userErrors() throws {
        let (config, found) = try loadConfig("user = \"_tls-gate9\"\n" + baseConfig)
        #expect(found == [])
        #expect(config?.user == "_tls-gate9")
        let rule = "use lowercase letters, digits, \"_\" and \"-\", starting with a letter or \"_\", at most 32 characters"
        #expect(try configDiagnostics("user = \"TLSgate\"\n" + baseConfig) == [
            "tlsgate.toml:1: user \"TLSgate\" is not a valid user name: \(rule)"
        ])
        #expect(try configDiagnostics("user = \"9gate\"\n" + baseConfig) == [
            "tlsgate.toml:1: user \"9gate\" is not a valid user name: \(rule)"
        ])
        #expect(try configDiagnostics("user = \"\(String(repeating: "a", count: 33))\"\n" + baseConfig) == [
            "tlsgate.toml:1: user \"\(String(repeating: "a", count: 33))\" is not a valid user name: \(rule)"
        ])
        #expect(try configDiagnostics("user = \"\"\n" + baseConfig) == [
            "tlsgate.toml:1: user is empty: remove the key to stay the account tlsgate is started as"
        ])
        #expect(try configDiagnostics("user = 1000\n" + baseConfig) == [
            "tlsgate.toml:1: user must be a user name such as \"tlsgate\", got an integer"
        ])
        let (root, rootFound) = try loadConfig("user = \"root\"\n" + baseConfig)
        #expect(root?.user == "root")
        #expect(rootFound == [
            "tlsgate.toml:1: warning: user \"root\" keeps every privilege: use a dedicated account such as \"tlsgate\""
        ])
    }

    @Test func unknownAccountIsAnErrorOnTheUserLine() throws {
        let directory = try Fixtures.folder(["tlsgate.toml": "# comment\nuser = \"nosuchuser\"\n" + baseConfig])
        defer { Fixtures.remove(directory) }
        try FileManager.default.createDirectory(atPath: directory + "/policies", withIntermediateDirectories: true)
        let path = directory + "/tlsgate.toml"
        let lookup: GatewayConfigLoader.AccountCheck = { ["tlsgate", "tlsgate-worker"].contains($0) ? nil : "no account named \"\($0)\"" }
        let (config, policies, found) = GatewayConfigLoader.loadAll(path, accountProblem: lookup)
        #expect(config == nil && policies.isEmpty)
        #expect(found.map(\.description) == ["\(path):2: user \"nosuchuser\": no account named \"nosuchuser\""])
        #expect(GatewayConfigLoader.load(path, accountProblem: lookup).diagnostics == found)
        // Without the lookup (the pure module alone) the name is only checked for form.
        #expect(GatewayConfigLoader.load(path).diagnostics == [])
        // An existing account, or no user at all, passes.
        try ("user = \"tlsgate\"\n" + baseConfig).write(toFile: path, atomically: true, encoding: .utf8)
        #expect(GatewayConfigLoader.load(path, accountProblem: lookup).diagnostics == [])
        try ("worker_user = \"same\"\n" + baseConfig).write(toFile: path, atomically: true, encoding: .utf8)
        #expect(GatewayConfigLoader.load(path, accountProblem: { _ in "never asked" }).diagnostics == [])
    }

    // MARK: - worker_user

    @Test func workerUserValuesAndDefault() throws {
        #expect(try loadConfig(baseConfig).0?.workerUser == .account("tlsgate-worker"))
        #expect(try loadConfig("worker_user = \"gw-work_1\"\n" + baseConfig).0?.workerUser == .account("gw-work_1"))
        #expect(try loadConfig("worker_user = \"per-policy\"\n" + baseConfig).0?.workerUser == .perPolicy)
        #expect(try loadConfig("worker_user = \"same\"\n" + baseConfig).0?.workerUser == .same)
        #expect(WorkerUser.perPolicy.accountName(forPolicy: "web") == "tlsgate-w-web")
        #expect(WorkerUser.default.accountName(forPolicy: "web") == "tlsgate-worker")
        #expect(WorkerUser.same.accountName(forPolicy: "web") == nil)
    }

    @Test func workerUserErrors() throws {
        let rule = "use lowercase letters, digits, \"_\" and \"-\", starting with a letter or \"_\", at most 32 characters (or \"per-policy\", \"same\")"
        #expect(try configDiagnostics("worker_user = \"Worker\"\n" + baseConfig) == [
            "tlsgate.toml:1: worker_user \"Worker\" is not a valid user name: \(rule)"
        ])
        #expect(try configDiagnostics("worker_user = \"\"\n" + baseConfig) == [
            "tlsgate.toml:1: worker_user is empty: remove the key for the default \"tlsgate-worker\", or write \"same\" to run the workers as the gateway's own account"
        ])
        #expect(try configDiagnostics("worker_user = 65534\n" + baseConfig) == [
            "tlsgate.toml:1: worker_user must be an account name such as \"tlsgate-worker\", \"per-policy\" or \"same\", got an integer"
        ])
        #expect(try configDiagnostics("worker_user = \"root\"\n" + baseConfig) == [
            "tlsgate.toml:1: worker_user \"root\": workers never run as root: use a dedicated account such as \"tlsgate-worker\""
        ])
        #expect(try configDiagnostics("user = \"tlsgate\"\nworker_user = \"tlsgate\"\n" + baseConfig) == [
            "tlsgate.toml:2: worker_user \"tlsgate\" is the gateway's own account (user): a worker could then signal the supervisor and read what it reads; use a second account such as \"tlsgate-worker\", or write worker_user = \"same\" to choose that knowingly"
        ])
        #expect(try configDiagnostics(baseConfig + "\n[workers]\nworker_user = \"x\"").first?.contains("unknown key \"worker_user\" in [workers]") == true)
        #expect(try loadConfig("worker_user = \"root\"\n" + baseConfig).0 == nil)
    }

    @Test func unknownWorkerAccountIsAnErrorOnItsLineOrForTheDefault() throws {
        let directory = try Fixtures.folder(["tlsgate.toml": "# comment\nworker_user = \"nosuchworker\"\n" + baseConfig])
        defer { Fixtures.remove(directory) }
        try FileManager.default.createDirectory(atPath: directory + "/policies", withIntermediateDirectories: true)
        let path = directory + "/tlsgate.toml"
        let lookup: GatewayConfigLoader.AccountCheck = { $0 == "tlsgate" ? nil : "no account named \"\($0)\"" }
        let (config, found) = GatewayConfigLoader.load(path, accountProblem: lookup)
        #expect(config == nil)
        #expect(found.map(\.description) == ["\(path):2: worker_user \"nosuchworker\": no account named \"nosuchworker\""])
        #expect(GatewayConfigLoader.workerUserLine(path) == 2)
        // Not written: the default account is looked up all the same, and named as such.
        try baseConfig.write(toFile: path, atomically: true, encoding: .utf8)
        #expect(GatewayConfigLoader.load(path, accountProblem: lookup).diagnostics.map(\.description) == [
            "\(path): worker_user \"tlsgate-worker\" (the default): no account named \"tlsgate-worker\""
        ])
        #expect(GatewayConfigLoader.workerUserLine(path) == nil)
        // "same" names no account to look up.
        try ("worker_user = \"same\"\n" + baseConfig).write(toFile: path, atomically: true, encoding: .utf8)
        #expect(GatewayConfigLoader.load(path, accountProblem: lookup).diagnostics == [])
    }

    @Test func perPolicyAccountsAreLookedUpForEachPolicy() throws {
        let directory = try Fixtures.folder(["tlsgate.toml": "worker_user = \"per-policy\"\n" + baseConfig])
        defer { Fixtures.remove(directory) }
        try FileManager.default.createDirectory(atPath: directory + "/policies", withIntermediateDirectories: true)
        for (name, network) in [("web", "203.0.113.0"), ("Api", "198.51.100.0"), ("mail", "192.0.2.0")] {
            try basePolicy.replacingOccurrences(of: "203.0.113.0", with: network)
                .write(toFile: "\(directory)/policies/\(name).toml", atomically: false, encoding: .utf8)
        }
        let path = directory + "/tlsgate.toml"
        let lookup: GatewayConfigLoader.AccountCheck = { $0 == "tlsgate-w-web" ? nil : "no account named \"\($0)\"" }
        let (config, policies, found) = GatewayConfigLoader.loadAll(path, accountProblem: lookup)
        #expect(config?.workerUser == .perPolicy && policies.count == 3)
        #expect(found.map(\.description) == [
            "\(path):1: worker_user = \"per-policy\": policy Api runs as \"tlsgate-w-Api\", which is not a valid user name (lowercase letters, digits, \"_\" and \"-\", at most 32 characters): rename \(directory)/policies/Api.toml or use one shared worker_user",
            "\(path):1: worker_user = \"per-policy\": policy mail runs as \"tlsgate-w-mail\": no account named \"tlsgate-w-mail\"",
        ])
    }

    // MARK: - [intercept]

    @Test func modeErrors() throws {
        #expect(try configDiagnostics(baseConfig + "\nmode = \"redirct\"") == [
            "tlsgate.toml:4: mode must be \"redirect\", \"tproxy\" or \"local\", got \"redirct\" (did you mean \"redirect\"?)"
        ])
        #expect(try configDiagnostics(baseConfig + "\nmode = \"nat\"") == [
            "tlsgate.toml:4: mode must be \"redirect\", \"tproxy\" or \"local\", got \"nat\""
        ])
        #expect(try configDiagnostics(baseConfig + "\nmode = 1") == [
            "tlsgate.toml:4: mode must be \"redirect\", \"tproxy\" or \"local\", got an integer"
        ])
    }

    @Test func clientsAreRequiredExceptInLocalMode() throws {
        let missing = "missing [intercept] from or interfaces: say which clients to intercept"
        #expect(try configDiagnostics("policies = \"policies\"\n[intercept]\nmode = \"redirect\"") == [
            "tlsgate.toml:2: \(missing)"
        ])
        #expect(try configDiagnostics("policies = \"policies\"\n\n[log]\n\n[intercept]\nmode = \"tproxy\"") == [
            "tlsgate.toml:5: \(missing)"
        ])
        #expect(try configDiagnostics("policies = \"policies\"") == ["tlsgate.toml:1: \(missing)"])
        #expect(try configDiagnostics("policies = \"policies\"\n[intercept]\nfrom = []\ninterfaces = []") == [
            "tlsgate.toml:3: \(missing)"
        ])
        let (local, found) = try loadConfig(baseConfig + "\ninterfaces = [\"lan0\"]\nmode = \"local\"")
        #expect(local?.intercept.mode == .local)
        #expect(found == [
            "tlsgate.toml:3: warning: from is ignored in local mode: only this host's own connections are intercepted",
            "tlsgate.toml:4: warning: interfaces is ignored in local mode: only this host's own connections are intercepted",
        ])
    }

    @Test func fromErrors() throws {
        #expect(try configDiagnostics(replacing("[\"198.18.0.0/24\"]", with: "[\"198.18.0.1/24\", \"lan\"]")) == [
            "tlsgate.toml:3: from: \"198.18.0.1/24\" has host bits set: did you mean \"198.18.0.0/24\" (or \"198.18.0.1/32\" for one address)?",
            "tlsgate.toml:3: from: \"lan\" is not an IP address or network",
        ])
        #expect(try configDiagnostics(replacing("[\"198.18.0.0/24\"]", with: "\"198.18.0.0/24\"")) == [
            "tlsgate.toml:3: from must be an array of strings such as [\"192.168.1.0/24\"], got a string"
        ])
        #expect(try configDiagnostics(replacing("[\"198.18.0.0/24\"]", with: "[\n  \"198.18.0.0/24\",\n  24,\n]")) == [
            "tlsgate.toml:5: from must contain only strings, got an integer"
        ])
        #expect(try configDiagnostics(replacing("[\"198.18.0.0/24\"]", with: "[\"198.18.0.0/16\", \"198.18.0.0/24\"]")) == [
            "tlsgate.toml:3: warning: from: 198.18.0.0/24 overlaps 198.18.0.0/16 listed on line 3"
        ])
    }

    @Test func interfaceErrors() throws {
        let rule = "is not an interface name: 1 to 15 letters, digits, \"_\", \".\" or \"-\""
        #expect(try configDiagnostics(baseConfig + "\ninterfaces = [\"lan 0\", \"\", \"..\", \"a23456789012345\", \"a234567890123456\"]") == [
            "tlsgate.toml:4: interfaces: \"lan 0\" \(rule)",
            "tlsgate.toml:4: interfaces: \"\" \(rule)",
            "tlsgate.toml:4: interfaces: \"..\" \(rule)",
            "tlsgate.toml:4: interfaces: \"a234567890123456\" \(rule)",
        ])
        #expect(try configDiagnostics(baseConfig + "\ninterfaces = [\n\"lan0\",\n\"lan0\"]") == [
            "tlsgate.toml:6: warning: interfaces: \"lan0\" is already listed on line 5"
        ])
        #expect(try configDiagnostics(baseConfig + "\ninterfaces = \"lan0\"") == [
            "tlsgate.toml:4: interfaces must be an array of strings such as [\"lan0\"], got a string"
        ])
    }

    @Test func listenErrors() throws {
        let (config, found) = try loadConfig(baseConfig + "\nlisten = \"127.0.0.1\"")
        #expect(found == [])
        #expect(config?.intercept.listen == IPAddress("127.0.0.1"))
        #expect(try configDiagnostics(baseConfig + "\nlisten = \"localhost\"") == [
            "tlsgate.toml:4: listen \"localhost\" is not an IP address: use \"::\" (IPv4 and IPv6), \"0.0.0.0\" (IPv4 only) or one of this host's addresses"
        ])
        #expect(try configDiagnostics(baseConfig + "\nlisten = 0") == [
            "tlsgate.toml:4: listen must be an IP address string such as \"::\", got an integer"
        ])
        #expect(try configDiagnostics(replacing("\"198.18.0.0/24\"]", with: "\"198.18.0.0/24\", \"2001:2::/64\"]") + "\nlisten = \"0.0.0.0\"") == [
            "tlsgate.toml:4: warning: listen \"0.0.0.0\" takes only IPv4 connections but from lists IPv6 networks: use \"::\" to take both"
        ])
        #expect(try configDiagnostics(baseConfig + "\nlisten = \"2001:db8::1\"") == [
            "tlsgate.toml:4: warning: listen \"2001:db8::1\" takes only IPv6 connections but from lists IPv4 networks: use \"::\" to take both"
        ])
    }

    @Test func tproxyErrors() throws {
        let tproxy = baseConfig + "\nmode = \"tproxy\""
        #expect(try configDiagnostics(tproxy + "\ntproxy_mark = \"0x746c\"") == [
            "tlsgate.toml:5: tproxy_mark must be an integer such as 0x746c, got a string"
        ])
        #expect(try configDiagnostics(tproxy + "\ntproxy_table = 0\n") == [
            "tlsgate.toml:5: tproxy_table must be between 1 and 4294967294, got 0"
        ])
        #expect(try configDiagnostics(tproxy + "\ntproxy_table = 4294967295\n") == [
            "tlsgate.toml:5: tproxy_table must be between 1 and 4294967294, got 4294967295"
        ])
        for (table, name) in [(253, "default"), (254, "main"), (255, "local")] {
            #expect(try configDiagnostics(tproxy + "\ntproxy_table = \(table)") == [
                "tlsgate.toml:5: tproxy_table \(table) is the kernel's \"\(name)\" routing table: pick an unused table number, e.g. 7468"
            ])
        }
        #expect(try configDiagnostics(baseConfig + "\ntproxy_mark = 1\ntproxy_table = 2") == [
            "tlsgate.toml:4: warning: tproxy_mark is only used in tproxy mode (mode is \"redirect\")",
            "tlsgate.toml:5: warning: tproxy_table is only used in tproxy mode (mode is \"redirect\")",
        ])
    }

    // MARK: - [log] and [workers]

    @Test func logErrors() throws {
        #expect(try configDiagnostics(baseConfig + "\n[log]\nformat = \"jsno\"") == [
            "tlsgate.toml:5: format must be \"text\" or \"json\", got \"jsno\" (did you mean \"json\"?)"
        ])
        let levels = "\"trace\", \"debug\", \"info\", \"notice\", \"warning\", \"error\" or \"critical\""
        #expect(try configDiagnostics(baseConfig + "\n[log]\nlevel = \"warn\"") == [
            "tlsgate.toml:5: level must be \(levels), got \"warn\" (did you mean \"warning\"?)"
        ])
        #expect(try configDiagnostics(baseConfig + "\n[log]\nlevel = \"INFO\"") == [
            "tlsgate.toml:5: level must be \(levels), got \"INFO\" (did you mean \"info\"?)"
        ])
        #expect(try configDiagnostics(baseConfig + "\n[log]\nlevel = \"verbose\"") == [
            "tlsgate.toml:5: level must be \(levels), got \"verbose\""
        ])
        #expect(try configDiagnostics(baseConfig + "\n[log]\nlevel = 3") == [
            "tlsgate.toml:5: level must be \(levels), got an integer"
        ])
    }

    @Test func workersErrors() throws {
        let workers = baseConfig + "\n[workers]\n"
        #expect(try configDiagnostics(workers + "drain_timeout = 30") == [
            "tlsgate.toml:5: drain_timeout must be a duration string such as \"5s\", got an integer"
        ])
        #expect(try configDiagnostics(workers + "drain_timeout = \"30 s\"") == [
            "tlsgate.toml:5: drain_timeout \"30 s\" is not a duration: use a number and a unit, e.g. \"250ms\", \"5s\", \"1h30m\""
        ])
        #expect(try configDiagnostics(workers + "drain_timeout = \"2h\"") == [
            "tlsgate.toml:5: drain_timeout \"2h\" is out of range: must be between 0s and 1h"
        ])
        #expect(try configDiagnostics(workers + "restart_delay = \"61s\"") == [
            "tlsgate.toml:5: restart_delay \"61s\" is out of range: must be between 0s and 1m"
        ])
        #expect(try configDiagnostics(workers + "restart_delay_max = \"6m\"") == [
            "tlsgate.toml:5: restart_delay_max \"6m\" is out of range: must be between 0s and 5m"
        ])
        #expect(try configDiagnostics(workers + "restart_delay = \"2s\"\nrestart_delay_max = \"1500ms\"") == [
            "tlsgate.toml:6: restart_delay_max \"1500ms\" is below restart_delay \"2s\""
        ])
        #expect(try configDiagnostics(workers + "crash_limit = 0") == [
            "tlsgate.toml:5: crash_limit must be between 1 and 1000, got 0"
        ])
        #expect(try configDiagnostics(workers + "crash_limit = \"5\"") == [
            "tlsgate.toml:5: crash_limit must be an integer, got a string"
        ])
        #expect(try configDiagnostics(workers + "crash_window = \"500ms\"") == [
            "tlsgate.toml:5: crash_window \"500ms\" is out of range: must be between 1s and 1h"
        ])
        #expect(try configDiagnostics(workers + "threads = 257") == [
            "tlsgate.toml:5: threads must be between 0 and 256, got 257"
        ])
        #expect(try configDiagnostics(workers + "threads = -1") == [
            "tlsgate.toml:5: threads must be between 0 and 256, got -1"
        ])
    }

    @Test func restartDelayMaxFollowsALongerRestartDelay() throws {
        let (config, found) = try loadConfig(baseConfig + "\n[workers]\nrestart_delay = \"30s\"")
        #expect(found == [])
        #expect(config?.workers.restartDelay == .seconds(30))
        #expect(config?.workers.restartDelayMax == .seconds(30))
    }

    @Test func dnsRefreshBounds() throws {
        let (defaults, none) = try loadConfig(baseConfig)
        #expect(none == [])
        #expect(defaults?.dns == GatewayConfig.DNS(minRefresh: .seconds(30), maxRefresh: .hours(1)))
        let (config, found) = try loadConfig(baseConfig + "\n[dns]\nmin_refresh = \"5s\"\nmax_refresh = \"10m\"")
        #expect(found == [])
        #expect(config?.dns == GatewayConfig.DNS(minRefresh: .seconds(5), maxRefresh: .minutes(10)))
        // A min_refresh above the default max_refresh lifts it.
        let (raised, _) = try loadConfig(baseConfig + "\n[dns]\nmin_refresh = \"1h\"")
        #expect(raised?.dns.maxRefresh == .hours(1))
        let dns = baseConfig + "\n[dns]\n"
        #expect(try configDiagnostics(dns + "min_refresh = \"500ms\"") == [
            "tlsgate.toml:5: min_refresh \"500ms\" is out of range: must be between 1s and 1h"
        ])
        #expect(try configDiagnostics(dns + "max_refresh = \"2d\"") == [
            "tlsgate.toml:5: max_refresh \"2d\" is not a duration: use a number and a unit, e.g. \"250ms\", \"5s\", \"1h30m\""
        ])
        #expect(try configDiagnostics(dns + "min_refresh = \"5m\"\nmax_refresh = \"1m\"") == [
            "tlsgate.toml:6: max_refresh \"1m\" is below min_refresh 5m: raise max_refresh or lower min_refresh"
        ])
        #expect(try configDiagnostics(dns + "ttl = \"5m\"") == ["tlsgate.toml:5: unknown key \"ttl\""])
    }

    // MARK: - Unknown keys and tables

    @Test func didYouMean() throws {
        #expect(try configDiagnostics("polices = \"policies\"\n" + baseConfig) == [
            "tlsgate.toml:1: unknown key \"polices\" (did you mean \"policies\"?)"
        ])
        #expect(try configDiagnostics(baseConfig + "\nmdoe = \"local\"") == [
            "tlsgate.toml:4: unknown key \"mdoe\" (did you mean \"mode\"?)"
        ])
        #expect(try configDiagnostics(baseConfig + "\n[intercpt]\nmode = \"local\"") == [
            "tlsgate.toml:4: unknown table [intercpt] (did you mean [intercept]?)"
        ])
        #expect(try configDiagnostics(baseConfig + "\n[worker]\nthreads = 2") == [
            "tlsgate.toml:4: unknown table [worker] (did you mean [workers]?)"
        ])
        #expect(try configDiagnostics(baseConfig + "\n[workers]\ncrash_limt = 2") == [
            "tlsgate.toml:5: unknown key \"crash_limt\" (did you mean \"crash_limit\"?)"
        ])
    }

    @Test func keysInTheWrongPlace() throws {
        #expect(try configDiagnostics(baseConfig + "\nlevel = \"debug\"") == [
            "tlsgate.toml:4: unknown key \"level\" in [intercept] (it belongs in [log])"
        ])
        #expect(try configDiagnostics(baseConfig + "\nuser = \"tlsgate\"") == [
            "tlsgate.toml:4: unknown key \"user\" in [intercept] (it belongs at the top of the file, before any [table] header)"
        ])
        #expect(try configDiagnostics("mode = \"local\"\n" + baseConfig) == [
            "tlsgate.toml:1: unknown key \"mode\" outside any table (it belongs in [intercept])"
        ])
        #expect(try configDiagnostics("log = \"json\"\n" + baseConfig) == [
            "tlsgate.toml:1: unknown key \"log\" ([log] is a table: write [log] on a line of its own, then its keys below it)"
        ])
        #expect(try configDiagnostics("color = true\n" + baseConfig) == [
            "tlsgate.toml:1: unknown key \"color\" outside any table (the top of the file takes policies, user and worker_user; other keys go in [intercept], [log], [workers], [admin] or [dns])"
        ])
        #expect(try configDiagnostics(baseConfig + "\n[log]\ncolor = true") == ["tlsgate.toml:5: unknown key \"color\""])
        #expect(try configDiagnostics(baseConfig + "\n[match]\nport = 80") == [
            "tlsgate.toml:4: unknown table [match] ([match] belongs in a policy file in the policies folder, not in the global config)"
        ])
        #expect(try configDiagnostics(baseConfig + "\n[user]\nname = \"x\"") == [
            "tlsgate.toml:4: unknown table [user] (user is a key: write user = ... at the top of the file, before any [table] header)"
        ])
        #expect(try configDiagnostics(baseConfig + "\n[metrics]") == [
            "tlsgate.toml:4: unknown table [metrics] (known tables: [intercept], [log], [workers], [admin], [dns])"
        ])
        #expect(try configDiagnostics(baseConfig + "\n[log.file]") == [
            "tlsgate.toml:4: unknown table [log.file] ([log] has no sub-tables)"
        ])
    }

    @Test func everyErrorIsCollectedInLineOrder() throws {
        let text = """
            policies = "nope"
            user = "Root"
            [intercept]
            mode = "proxy"
            from = ["10.0.0.1/8"]
            listen = "any"
            tproxy_table = 254
            [log]
            format = "xml"
            [workers]
            threads = 1000
            crash_window = "1d"
            """
        let (config, found) = try loadConfig(text)
        #expect(config == nil)
        #expect(found == [
            "tlsgate.toml:1: policies folder \"nope\" does not exist",
            "tlsgate.toml:2: user \"Root\" is not a valid user name: use lowercase letters, digits, \"_\" and \"-\", starting with a letter or \"_\", at most 32 characters",
            "tlsgate.toml:4: mode must be \"redirect\", \"tproxy\" or \"local\", got \"proxy\" (did you mean \"tproxy\"?)",
            "tlsgate.toml:5: from: \"10.0.0.1/8\" has host bits set: did you mean \"10.0.0.0/8\" (or \"10.0.0.1/32\" for one address)?",
            "tlsgate.toml:6: listen \"any\" is not an IP address: use \"::\" (IPv4 and IPv6), \"0.0.0.0\" (IPv4 only) or one of this host's addresses",
            "tlsgate.toml:7: tproxy_table 254 is the kernel's \"main\" routing table: pick an unused table number, e.g. 7468",
            "tlsgate.toml:9: format must be \"text\" or \"json\", got \"xml\"",
            "tlsgate.toml:11: threads must be between 0 and 256, got 1000",
            "tlsgate.toml:12: crash_window \"1d\" is not a duration: use a number and a unit, e.g. \"250ms\", \"5s\", \"1h30m\"",
        ])
    }

    @Test func syntaxErrorsAreReportedWithoutDecoding() throws {
        #expect(try configDiagnostics("policies = policies\n[intercept]\nfrom = [\"x\"]\nmode = 'local") == [
            "tlsgate.toml:1: bad value \"policies\": strings must be in quotes",
            "tlsgate.toml:4: unterminated string (missing closing ')",
        ])
    }

    // MARK: - loadAll

    @Test func loadAllReadsThePolicies() throws {
        let (config, policies, found) = GatewayConfigLoader.loadAll(configFixtures + "/full.toml")
        #expect(found == [])
        #expect(config?.intercept.mode == .tproxy)
        #expect(policies.map(\.name) == ["dual", "v4"])
        #expect(policies.first?.sourcePath == configFixtures + "/policies/dual.toml")
    }

    @Test func loadAllListsPolicyErrorsAfterAGoodConfig() throws {
        let path = configFixtures + "/broken-policies.toml"
        let (config, policies, found) = GatewayConfigLoader.loadAll(path)
        #expect(config?.policies == configFixtures + "/broken-policies")
        #expect(policies.map(\.name) == ["good"])
        let folder = configFixtures + "/broken-policies"
        #expect(found.map(\.description) == [
            "\(folder)/bad.toml:5: missing [upstream] server_name: set the name to verify the server's certificate against, or \"http-host\"",
            "\(folder)/bad.toml:7: unknown key \"servr_name\" (did you mean \"server_name\"?)",
        ])
    }

    @Test func loadAllStopsAtConfigErrors() throws {
        let directory = try Fixtures.folder([
            "tlsgate.toml": "policies = \"policies\"\n[intercept]\nfrom = [\"198.18.0.0/24\"]\nmode = \"nat\"\n"
        ])
        defer { Fixtures.remove(directory) }
        try FileManager.default.createDirectory(atPath: directory + "/policies", withIntermediateDirectories: true)
        try "[match]\n".write(toFile: directory + "/policies/bad.toml", atomically: false, encoding: .utf8)
        let (config, policies, found) = GatewayConfigLoader.loadAll(directory + "/tlsgate.toml")
        #expect(config == nil)
        #expect(policies == [])
        #expect(found.map(\.description) == [
            "\(directory)/tlsgate.toml:4: mode must be \"redirect\", \"tproxy\" or \"local\", got \"nat\""
        ])
        // The same folder without the config error: now the policy is read.
        try "policies = \"policies\"\n[intercept]\nfrom = [\"198.18.0.0/24\"]\n".write(
            toFile: directory + "/tlsgate.toml", atomically: false, encoding: .utf8)
        let again = GatewayConfigLoader.loadAll(directory + "/tlsgate.toml")
        #expect(again.config != nil)
        let errors = again.diagnostics.filter(\.isError)
        #expect(!errors.isEmpty)
        #expect(Set(errors.map(\.file)) == [directory + "/policies/bad.toml"])
    }

    @Test func familyWarnings() throws {
        let path = configFixtures + "/ipv4-only.toml"
        let (config, policies, found) = GatewayConfigLoader.loadAll(path)
        #expect(config != nil)
        #expect(policies.map(\.name) == ["dual", "v4"])
        #expect(found.map(\.description) == [
            "\(path):3: warning: policy dual has IPv6 networks but [intercept] from lists no IPv6 client network: its IPv6 traffic will not be intercepted"
        ])

        let ipv6Only = try #require(config.map { config in
            var changed = config
            changed.intercept.from = [IPNetwork("2001:2::/64")!]
            return changed
        })
        #expect(GatewayConfigLoader.familyWarnings(ipv6Only, policies: policies, fromLine: 7).map(\.description) == [
            "\(path):7: warning: policy dual has IPv4 networks but [intercept] from lists no IPv4 client network: its IPv4 traffic will not be intercepted",
            "\(path):7: warning: policy v4 has IPv4 networks but [intercept] from lists no IPv4 client network: its IPv4 traffic will not be intercepted",
        ])
        var withInterfaces = ipv6Only
        withInterfaces.intercept.interfaces = ["lan0"]
        #expect(GatewayConfigLoader.familyWarnings(withInterfaces, policies: policies, fromLine: 7) == [])
        var local = ipv6Only
        local.intercept.mode = .local
        #expect(GatewayConfigLoader.familyWarnings(local, policies: policies, fromLine: 7) == [])
        var both = ipv6Only
        both.intercept.from.append(IPNetwork("10.0.0.0/8")!)
        #expect(GatewayConfigLoader.familyWarnings(both, policies: policies, fromLine: 7) == [])
    }

    // MARK: - The shipped example

    @Test func shippedExampleIsValidAndSpellsOutTheDefaults() throws {
        let root = URL(fileURLWithPath: Fixtures.shippedPolicies).deletingLastPathComponent().path
        let path = root + "/Scripts/tlsgate.example.toml"
        let (config, policies, found) = GatewayConfigLoader.loadAll(path)
        #expect(found == [])
        let loaded = try #require(config)
        #expect(!policies.isEmpty)
        #expect(loaded.policies == root + "/Scripts/../Policies")
        #expect(loaded.user == "tlsgate")
        #expect(loaded.intercept.interfaces == [])
        // Apart from what a gateway must choose, every value is the default.
        var defaults = GatewayConfig(sourcePath: path, policies: loaded.policies, user: "tlsgate")
        defaults.intercept.from = loaded.intercept.from
        #expect(loaded == defaults)
        #expect(loaded.intercept.from.contains(where: \.isIPv4) && loaded.intercept.from.contains { !$0.isIPv4 })
    }
}

@Suite struct GatewayConfigSummaryTests {
    @Test func summaryLine() {
        var config = GatewayConfig(
            sourcePath: "tlsgate.toml", policies: "policies",
            intercept: .init(from: [IPNetwork("198.18.0.0/24")!, IPNetwork("2001:2::/64")!]))
        #expect(config.summaryLine == "config tlsgate.toml: mode redirect, from 198.18.0.0/24,2001:2::/64, listen ::, user unchanged, workers as tlsgate-worker")
        config.user = "tlsgate"
        config.intercept.mode = .tproxy
        config.intercept.interfaces = ["lan0", "lan1"]
        config.intercept.listen = IPAddress("0.0.0.0")!
        #expect(config.summaryLine == "config tlsgate.toml: mode tproxy, from 198.18.0.0/24,2001:2::/64, interfaces lan0,lan1, mark 0x746c table 7468, listen 0.0.0.0, user tlsgate, workers as tlsgate-worker")
        config.intercept.mode = .local
        #expect(config.summaryLine == "config tlsgate.toml: mode local (this host's own connections), listen 0.0.0.0, user tlsgate, workers as tlsgate-worker")
        config.workerUser = .perPolicy
        #expect(config.summaryLine.hasSuffix(", user tlsgate, workers as tlsgate-w-POLICY"))
        config.workerUser = .same
        #expect(config.summaryLine.hasSuffix(", user tlsgate, workers as the gateway's account"))
    }

    @Test func spellingSuggestions() {
        #expect(Spelling.suggestion(for: "warn", among: GatewayConfig.Log.levels) == "warning")
        #expect(Spelling.suggestion(for: "crit", among: GatewayConfig.Log.levels) == "critical")
        #expect(Spelling.suggestion(for: "de", among: GatewayConfig.Log.levels) == nil)
        #expect(Spelling.suggestion(for: "trac", among: ["tracing-in", "tracing-out"]) == nil)
        #expect(Spelling.alternatives(["a"]) == "\"a\"")
        #expect(Spelling.alternatives(["a", "b", "c"]) == "\"a\", \"b\" or \"c\"")
    }

    @Test func configTablesInAPolicySaySo() throws {
        #expect(try diagnostics(basePolicy + "\n[intercept]\nmode = \"local\"") == [
            "p.toml:8: unknown table [intercept] ([intercept] belongs in the global config file, not in a policy)"
        ])
    }
}
