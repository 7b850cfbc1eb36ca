/// Turns the global config file's TOML table into a `GatewayConfig`, collecting every
/// problem with its line (see `GatewayConfig` for the keys, their defaults and ranges).
/// `package`: the fuzz target (Sources/tlsgate-fuzz) drives it too.
package struct GatewayConfigDecoder {
    /// Lines that checks after decoding point at.
    struct Lines: Sendable {
        /// `[intercept] from`, or nil when the file does not set it.
        var from: Int?
        /// `user`, or nil when the file does not set it.
        var user: Int?
        /// `worker_user`, or nil when the file does not set it.
        var workerUser: Int?
    }

    private var fields: TOMLFields
    private(set) var lines = Lines()

    var file: String { fields.file }
    var diagnostics: [Diagnostic] { fields.diagnostics }

    package init(file: String, root: TOMLTable) {
        fields = TOMLFields(file: file, root: root)
    }

    /// What `isValidUserName` accepts, as the errors say it.
    static let userNameRule = "use lowercase letters, digits, \"_\" and \"-\", starting with a letter or \"_\", at most 32 characters"

    /// `[a-z_][a-z0-9_-]*`, at most 32 characters: what `useradd` accepts by default.
    static func isValidUserName(_ name: String) -> Bool {
        let scalars = Array(name.unicodeScalars)
        guard let first = scalars.first, scalars.count <= 32 else { return false }
        guard ("a"..."z").contains(first) || first == "_" else { return false }
        return scalars.allSatisfy { ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "_" || $0 == "-" }
    }

    /// 1 to 15 characters `[A-Za-z0-9_.-]`, not `.` or `..`: a Linux interface name.
    static func isValidInterfaceName(_ name: String) -> Bool {
        let scalars = Array(name.unicodeScalars)
        guard (1...GatewayConfig.Intercept.maximumInterfaceNameLength).contains(scalars.count),
            name != ".", name != ".."
        else { return false }
        return scalars.allSatisfy { char in
            switch char {
            case "A"..."Z", "a"..."z", "0"..."9", "_", ".", "-": return true
            default: return false
            }
        }
    }

    package mutating func decode() -> GatewayConfig? {
        fields.checkStructure(GatewayConfigSchema.schema)
        let policies = decodePolicies()
        let user = decodeUser()
        let workerUser = decodeWorkerUser(user: user)
        let intercept = decodeIntercept()
        let log = decodeLog()
        let workers = decodeWorkers()
        let admin = decodeAdmin()
        let dns = decodeDNS()
        // An error anywhere (user included, which is optional) means no config.
        guard !fields.hasErrors, let policies, let workerUser, let intercept, let log, let workers, let admin, let dns else { return nil }
        return GatewayConfig(
            sourcePath: file, policies: policies, user: user, workerUser: workerUser, intercept: intercept, log: log, workers: workers, admin: admin,
            dns: dns)
    }

    // MARK: - Top level

    private mutating func decodePolicies() -> String? {
        guard let value = fields.value(nil, "policies") else {
            fields.error(1, "missing policies = \"DIR\": the folder of policy files")
            return nil
        }
        guard let text = value.stringValue, !text.isEmpty else {
            let got = value.stringValue == nil ? value.typeDescription : "an empty string"
            fields.error(value.line, "policies must be a folder path, got \(got)")
            return nil
        }
        let folder = PathText.join(PathText.directory(of: file), text)
        switch TextFile.directoryProblem(folder) {
        case nil:
            return folder
        case .missing:
            fields.error(value.line, "policies folder \(quoted(folder)) does not exist")
        case .notADirectory:
            fields.error(value.line, "policies \(quoted(folder)) is not a folder")
        case .unreachable(let reason):
            fields.error(value.line, "policies folder \(quoted(folder)) cannot be used: \(reason)")
        }
        return nil
    }

    /// The user name; nil when not set or wrong (after reporting).
    private mutating func decodeUser() -> String? {
        guard let value = fields.value(nil, "user") else { return nil }
        lines.user = value.line
        guard let name = fields.string(nil, "user", what: "a user name such as \"tlsgate\"") else { return nil }
        if name.isEmpty {
            fields.error(value.line, "user is empty: remove the key to stay the account tlsgate is started as")
            return nil
        }
        guard Self.isValidUserName(name) else {
            fields.error(
                value.line,
                "user \(quoted(name)) is not a valid user name: \(Self.userNameRule)")
            return nil
        }
        if name == "root" {
            fields.warning(value.line, "user \"root\" keeps every privilege: use a dedicated account such as \"tlsgate\"")
        }
        return name
    }

    /// `worker_user`: the default when not set; nil when wrong (after reporting).
    private mutating func decodeWorkerUser(user: String?) -> WorkerUser? {
        guard let value = fields.value(nil, "worker_user") else { return .default }
        lines.workerUser = value.line
        let choices = "an account name such as \"\(WorkerUser.defaultAccount)\", \"\(WorkerUser.perPolicyKeyword)\" or \"\(WorkerUser.sameKeyword)\""
        guard let name = fields.string(nil, "worker_user", what: choices) else { return nil }
        switch name {
        case WorkerUser.perPolicyKeyword: return .perPolicy
        case WorkerUser.sameKeyword: return .same
        case "":
            fields.error(
                value.line,
                "worker_user is empty: remove the key for the default \"\(WorkerUser.defaultAccount)\", or write \"\(WorkerUser.sameKeyword)\" to run the workers as the gateway's own account")
            return nil
        default: break
        }
        guard Self.isValidUserName(name) else {
            fields.error(
                value.line,
                "worker_user \(quoted(name)) is not a valid user name: \(Self.userNameRule) (or \"\(WorkerUser.perPolicyKeyword)\", \"\(WorkerUser.sameKeyword)\")")
            return nil
        }
        if name == "root" {
            fields.error(value.line, "worker_user \"root\": workers never run as root: use a dedicated account such as \"\(WorkerUser.defaultAccount)\"")
            return nil
        }
        if name == user {
            fields.error(
                value.line,
                "worker_user \(quoted(name)) is the gateway's own account (user): a worker could then signal the supervisor and read what it reads; use a second account such as \"\(WorkerUser.defaultAccount)\", or write worker_user = \"\(WorkerUser.sameKeyword)\" to choose that knowingly")
            return nil
        }
        return .account(name)
    }

    // MARK: - [intercept]

    private mutating func decodeIntercept() -> GatewayConfig.Intercept? {
        let table = "intercept"
        let mode = fields.choice(table, "mode", default: GatewayConfig.InterceptMode.redirect)
        lines.from = fields.value(table, "from")?.line

        var ok = true
        var networks: [IPNetwork] = []
        var networkLines: [Int] = []
        var clientsGiven = false
        if let value = fields.value(table, "from") {
            if let elements = fields.strings(value, key: "from", example: "[\"192.168.1.0/24\"]") {
                clientsGiven = clientsGiven || !elements.isEmpty
                for (text, line) in elements {
                    do {
                        let network = try IPNetwork.parse(text)
                        if let index = networks.firstIndex(where: { $0.overlaps(network) }) {
                            fields.warning(line, "from: \(network) overlaps \(networks[index]) listed on line \(networkLines[index])")
                        }
                        networks.append(network)
                        networkLines.append(line)
                    } catch {
                        fields.error(line, "from: \(error.description)")
                        ok = false
                    }
                }
            } else {
                ok = false
                clientsGiven = true
            }
        }

        var interfaces: [String] = []
        var interfaceLines: [Int] = []
        if let value = fields.value(table, "interfaces") {
            if let elements = fields.strings(value, key: "interfaces", example: "[\"lan0\"]") {
                clientsGiven = clientsGiven || !elements.isEmpty
                for (name, line) in elements {
                    if !Self.isValidInterfaceName(name) {
                        fields.error(
                            line,
                            "interfaces: \(quoted(name)) is not an interface name: 1 to 15 letters, digits, \"_\", \".\" or \"-\"")
                        ok = false
                    } else if let index = interfaces.firstIndex(of: name) {
                        fields.warning(line, "interfaces: \(quoted(name)) is already listed on line \(interfaceLines[index])")
                    } else {
                        interfaces.append(name)
                        interfaceLines.append(line)
                    }
                }
            } else {
                ok = false
                clientsGiven = true
            }
        }

        switch mode {
        case .redirect?, .tproxy?:
            if !clientsGiven {
                let line = fields.value(table, "from")?.line ?? fields.value(table, "interfaces")?.line
                    ?? fields.headerLine(table)
                fields.error(line, "missing [intercept] from or interfaces: say which clients to intercept")
                ok = false
            }
        case .local?:
            for key in ["from", "interfaces"] {
                if let value = fields.value(table, key) {
                    fields.warning(value.line, "\(key) is ignored in local mode: only this host's own connections are intercepted")
                }
            }
        case nil:
            ok = false
        }

        var listen: IPAddress? = GatewayConfig.Intercept.defaultListen
        if let value = fields.value(table, "listen") {
            listen = nil
            if let text = fields.string(table, "listen", what: "an IP address string such as \"::\"") {
                if let address = IPAddress(text) {
                    listen = address
                    if mode != .local {
                        checkListenFamilies(address, text: text, line: value.line, from: networks)
                    }
                } else {
                    fields.error(
                        value.line,
                        "listen \(quoted(text)) is not an IP address: use \"::\" (IPv4 and IPv6), \"0.0.0.0\" (IPv4 only) or one of this host's addresses")
                }
            }
        }

        let mark = fields.integer(
            table, "tproxy_mark", default: Int64(GatewayConfig.Intercept.defaultTProxyMark),
            range: GatewayConfig.Intercept.tproxyMarkRange, example: "0x746c", hex: true)
        var routingTable = fields.integer(
            table, "tproxy_table", default: Int64(GatewayConfig.Intercept.defaultTProxyTable),
            range: GatewayConfig.Intercept.tproxyTableRange, example: "7468")
        if let number = routingTable, let name = GatewayConfig.Intercept.reservedTables[Int(number)],
            let line = fields.value(table, "tproxy_table")?.line
        {
            fields.error(
                line,
                "tproxy_table \(number) is the kernel's \(quoted(name)) routing table: pick an unused table number, e.g. \(GatewayConfig.Intercept.defaultTProxyTable)")
            routingTable = nil
        }
        if let mode, mode != .tproxy {
            for key in ["tproxy_mark", "tproxy_table"] {
                if let value = fields.value(table, key) {
                    fields.warning(value.line, "\(key) is only used in tproxy mode (mode is \(quoted(mode.rawValue)))")
                }
            }
        }

        let onStop = fields.choice(table, "on_stop", default: GatewayConfig.OnStop.reject)
        var guardFile: String? = GatewayConfig.Intercept.defaultGuardFile
        if let value = fields.value(table, "guard_file") {
            if let text = fields.string(table, "guard_file", what: "an absolute path such as \"/var/lib/tlsgate/guard.nft\", or \"\"") {
                if text.isEmpty {
                    guardFile = nil
                } else if text.hasPrefix("/") {
                    guardFile = text
                } else {
                    fields.error(value.line, "guard_file \(quoted(text)) must be an absolute path (it is read at boot, before the config), or \"\" to not save the guard")
                    ok = false
                }
            } else {
                ok = false
            }
        }

        guard ok, let mode, let listen, let mark, let routingTable, let onStop else { return nil }
        return GatewayConfig.Intercept(
            mode: mode, from: networks, interfaces: interfaces, listen: listen, tproxyMark: UInt32(mark),
            tproxyTable: Int(routingTable), onStop: onStop, guardFile: guardFile)
    }

    /// Warns when `listen` cannot accept the family of some client networks.
    private mutating func checkListenFamilies(_ address: IPAddress, text: String, line: Int, from networks: [IPNetwork]) {
        let isAny = address.bytes.allSatisfy { $0 == 0 }
        let takesIPv4 = address.isIPv4 || address.isIPv4Mapped || isAny
        let takesIPv6 = !address.isIPv4 && !address.isIPv4Mapped
        if !takesIPv6, networks.contains(where: { !$0.isIPv4 }) {
            fields.warning(
                line, "listen \(quoted(text)) takes only IPv4 connections but from lists IPv6 networks: use \"::\" to take both")
        }
        if !takesIPv4, networks.contains(where: \.isIPv4) {
            fields.warning(
                line, "listen \(quoted(text)) takes only IPv6 connections but from lists IPv4 networks: use \"::\" to take both")
        }
    }

    // MARK: - [log] and [workers]

    private mutating func decodeLog() -> GatewayConfig.Log? {
        let format = fields.choice("log", "format", default: GatewayConfig.LogFormat.text)
        let level = fields.word("log", "level", among: GatewayConfig.Log.levels, default: "info")
        guard let format, let level else { return nil }
        return GatewayConfig.Log(format: format, level: level)
    }

    private mutating func decodeWorkers() -> GatewayConfig.Workers? {
        typealias W = GatewayConfig.Workers
        let table = "workers"
        let defaults = W()
        let drain = fields.duration(table, "drain_timeout", default: defaults.drainTimeout, range: W.drainTimeoutRange)
        let delay = fields.duration(table, "restart_delay", default: defaults.restartDelay, range: W.restartDelayRange)
        var delayMax = fields.duration(
            table, "restart_delay_max", default: max(defaults.restartDelayMax, delay ?? defaults.restartDelay),
            range: W.restartDelayMaxRange)
        if let delay, let cap = delayMax, cap < delay, let value = fields.value(table, "restart_delay_max"),
            let capText = value.stringValue, let delayText = fields.value(table, "restart_delay")?.stringValue
        {
            fields.error(value.line, "restart_delay_max \(quoted(capText)) is below restart_delay \(quoted(delayText))")
            delayMax = nil
        }
        let crashLimit = fields.integer(
            table, "crash_limit", default: Int64(defaults.crashLimit), range: W.crashLimitRange)
        let window = fields.duration(table, "crash_window", default: defaults.crashWindow, range: W.crashWindowRange)
        let threads = fields.integer(table, "threads", default: Int64(defaults.threads), range: W.threadsRange)
        guard let drain, let delay, let delayMax, let crashLimit, let window, let threads else { return nil }
        return W(
            drainTimeout: drain, restartDelay: delay, restartDelayMax: delayMax, crashLimit: Int(crashLimit),
            crashWindow: window, threads: Int(threads))
    }

    // MARK: - [admin]

    private mutating func decodeAdmin() -> GatewayConfig.Admin? {
        let table = "admin"
        var ok = true
        var allowRemote = false
        if let value = fields.value(table, "allow_remote") {
            if let flag = value.booleanValue {
                allowRemote = flag
            } else {
                fields.error(value.line, "allow_remote must be true or false, got \(value.typeDescription)")
                ok = false
            }
        }
        var listen: GatewayConfig.AdminAddress?
        if let value = fields.value(table, "listen") {
            if let text = fields.string(table, "listen", what: "an \"ADDRESS:PORT\" string such as \"127.0.0.1:9464\"") {
                if let address = GatewayConfig.AdminAddress(text) {
                    if !address.isLoopback && !allowRemote {
                        fields.error(
                            value.line,
                            "listen \(quoted(text)) is not a loopback address: /metrics and /healthz would be open to the network; use \"127.0.0.1:9464\", or set allow_remote = true in [admin] to serve them there on purpose")
                        ok = false
                    } else {
                        listen = address
                    }
                } else {
                    fields.error(
                        value.line,
                        "listen \(quoted(text)) is not an address and port: use \"127.0.0.1:9464\" or \"[::1]:9464\" (port 1 to 65535)")
                    ok = false
                }
            } else {
                ok = false
            }
        }
        if allowRemote, listen?.isLoopback ?? true, let value = fields.value(table, "allow_remote") {
            fields.warning(value.line, "allow_remote = true has no effect: listen is \(listen == nil ? "not set" : "a loopback address")")
        }
        var controlSocket: String? = GatewayConfig.Admin.defaultControlSocket
        if let value = fields.value(table, "control_socket") {
            if let text = fields.string(table, "control_socket", what: "an absolute path such as \"/run/tlsgate/control.sock\", or \"\"") {
                if text.isEmpty {
                    controlSocket = nil
                } else if !text.hasPrefix("/") {
                    fields.error(value.line, "control_socket \(quoted(text)) must be an absolute path (tlsgate status and reload find it from any folder), or \"\" for none")
                    ok = false
                } else if text.utf8.count > GatewayConfig.Admin.maximumSocketPathLength {
                    fields.error(value.line, "control_socket is \(text.utf8.count) bytes long: a Unix socket path holds at most \(GatewayConfig.Admin.maximumSocketPathLength); pick a shorter path")
                    ok = false
                } else {
                    controlSocket = text
                }
            } else {
                ok = false
            }
        }
        guard ok else { return nil }
        return GatewayConfig.Admin(listen: listen, allowRemote: allowRemote, controlSocket: controlSocket)
    }

    // MARK: - [dns]

    private mutating func decodeDNS() -> GatewayConfig.DNS? {
        typealias D = GatewayConfig.DNS
        let defaults = D()
        let minimum = fields.duration("dns", "min_refresh", default: defaults.minRefresh, range: D.minRefreshRange)
        let maximum = fields.duration(
            "dns", "max_refresh", default: max(defaults.maxRefresh, minimum ?? defaults.minRefresh), range: D.maxRefreshRange)
        guard let minimum, let maximum else { return nil }
        if maximum < minimum, let value = fields.value("dns", "max_refresh"), let text = value.stringValue {
            fields.error(value.line, "max_refresh \(quoted(text)) is below min_refresh \(minimum): raise max_refresh or lower min_refresh")
            return nil
        }
        return D(minRefresh: minimum, maxRefresh: maximum)
    }
}
