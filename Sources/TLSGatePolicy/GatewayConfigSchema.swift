/// The keys and tables of the global config file; see `GatewayConfig` for what each means.
enum GatewayConfigSchema {
    static let rootKeys = ["policies", "user", "worker_user"]

    /// Known tables and their keys, in the order they are documented.
    static let tables: [(name: String, keys: [String])] = [
        ("intercept", ["mode", "from", "interfaces", "listen", "tproxy_mark", "tproxy_table", "on_stop", "guard_file"]),
        ("log", ["format", "level"]),
        ("workers", ["drain_timeout", "restart_delay", "restart_delay_max", "crash_limit", "crash_window", "threads"]),
        ("admin", ["listen", "allow_remote", "control_socket"]),
        ("dns", ["min_refresh", "max_refresh"]),
    ]

    static let schema = TOMLSchema(
        rootKeys: rootKeys,
        tables: tables,
        rootKeyHint: "the top of the file takes policies, user and worker_user; other keys go in [intercept], [log], [workers], [admin] or [dns]",
        foreignTables: Dictionary(
            uniqueKeysWithValues: PolicySchema.tables.map {
                ($0.name, "[\($0.name)] belongs in a policy file in the policies folder, not in the global config")
            })
    )
}
