/// The global configuration (`/etc/tlsgate/tlsgate.toml`): where the policies are, who
/// the gateway runs as, what it intercepts. Parsed and validated once by
/// `GatewayConfigLoader`; immutable afterwards.
///
/// The file, every key with its default (see `Scripts/tlsgate.example.toml`):
/// ```toml
/// policies = "/etc/tlsgate/policies"   # required
/// user = "tlsgate"                     # (none)
/// [intercept]
/// mode = "redirect"                    # ("redirect") redirect | tproxy | local
/// from = ["198.18.0.0/24"]             # ([]) client networks
/// interfaces = ["lan0"]                # ([]) LAN interfaces
/// listen = "::"                        # ("::")
/// tproxy_mark = 0x746c                 # (0x746c)
/// tproxy_table = 7468                  # (7468)
/// on_stop = "reject"                   # ("reject") reject | open
/// guard_file = "/var/lib/tlsgate/guard.nft"  # (that) "" = not saved
/// [log]
/// format = "text"                      # ("text") text | json
/// level = "info"                       # ("info")
/// [workers]
/// drain_timeout = "30s"                # ("30s")
/// restart_delay = "0s"                 # ("0s")
/// restart_delay_max = "5s"             # ("5s")
/// crash_limit = 5                      # (5)
/// crash_window = "60s"                 # ("60s")
/// threads = 0                          # (0)
/// [admin]
/// listen = "127.0.0.1:9464"            # (off) /metrics and /healthz
/// allow_remote = false                 # (false) true: listen may be non-loopback
/// control_socket = "/run/tlsgate/control.sock"  # (that) "" = none
/// [dns]
/// min_refresh = "30s"                  # ("30s")
/// max_refresh = "1h"                   # ("1h")
/// ```
public struct GatewayConfig: Sendable, Equatable, Codable {
    /// `[intercept] mode`: which connections are taken over (default `redirect`).
    public enum InterceptMode: String, Sendable, Equatable, Codable, CaseIterable {
        /// nat REDIRECT of forwarded LAN traffic (the default).
        case redirect
        /// TPROXY of forwarded LAN traffic: no NAT, the socket sees the real destination.
        case tproxy
        /// This host's own outgoing connections (nat output), skipping the gateway's uid.
        case local
    }

    /// `[intercept] on_stop`: what happens to LAN traffic for the policies' destinations
    /// when the gateway stops.
    public enum OnStop: String, Sendable, Equatable, Codable, CaseIterable {
        /// The fail-closed guard table stays: such connections get a TCP reset until the
        /// next start or `tlsgate rules --remove` (the default).
        case reject
        /// Both tables are deleted on a controlled stop: traffic flows as if tlsgate had
        /// never run (in clear). An explicit operator choice; a killed gateway still fails
        /// closed.
        case open
    }

    /// `[log] format`: one line per event as `key=value` text, or one JSON object per line.
    public enum LogFormat: String, Sendable, Equatable, Codable, CaseIterable {
        case text
        case json
    }

    /// `[intercept]`: which client connections are redirected to the gateway, and how.
    public struct Intercept: Sendable, Equatable, Codable {
        /// `mode`: `"redirect"` (default), `"tproxy"` or `"local"`.
        public var mode: InterceptMode
        /// `from`: client networks whose connections are intercepted, IPv4 and IPv6
        /// (default none). In redirect and tproxy mode, `from` or `interfaces` (or both)
        /// must say which clients are intercepted; local mode ignores both.
        public var from: [IPNetwork]
        /// `interfaces`: LAN interfaces whose connections are intercepted (instead of, or
        /// with, `from`); names of 1 to 15 characters `[A-Za-z0-9_.-]` (default none).
        public var interfaces: [String]
        /// `listen`: the address the per-policy sockets are bound to (default `"::"`, which
        /// takes IPv4 and IPv6).
        public var listen: IPAddress
        /// `tproxy_mark`: tproxy mode's packet mark, 1...0xffffffff (default 0x746c).
        public var tproxyMark: UInt32
        /// `tproxy_table`: tproxy mode's routing table that delivers marked packets locally,
        /// 1...0xfffffffe except 253, 254 and 255 (default, main, local) (default 7468).
        public var tproxyTable: Int
        /// `on_stop`: `"reject"` (default: fail closed) or `"open"`.
        public var onStop: OnStop
        /// `guard_file`: where the supervisor saves the fail-closed guard after each
        /// application, for `tlsgate rules --restore-guard` (at boot, before each start);
        /// nil (`""`) to not save it. Default `/var/lib/tlsgate/guard.nft`.
        public var guardFile: String?

        public static let defaultGuardFile = "/var/lib/tlsgate/guard.nft"

        public static let defaultListen = IPAddress("::")!
        public static let defaultTProxyMark: UInt32 = 0x746c
        public static let defaultTProxyTable = 7468
        public static let tproxyMarkRange: ClosedRange<Int64> = 1...0xffff_ffff
        public static let tproxyTableRange: ClosedRange<Int64> = 1...0xffff_fffe
        /// Routing tables owned by the kernel and iproute2, not usable for tproxy.
        public static let reservedTables: [Int: String] = [253: "default", 254: "main", 255: "local"]
        /// The longest Linux interface name (IFNAMSIZ - 1).
        public static let maximumInterfaceNameLength = 15

        public init(
            mode: InterceptMode = .redirect, from: [IPNetwork] = [], interfaces: [String] = [],
            listen: IPAddress = Intercept.defaultListen, tproxyMark: UInt32 = Intercept.defaultTProxyMark,
            tproxyTable: Int = Intercept.defaultTProxyTable, onStop: OnStop = .reject,
            guardFile: String? = Intercept.defaultGuardFile
        ) {
            self.onStop = onStop
            self.guardFile = guardFile
            self.mode = mode
            self.from = from
            self.interfaces = interfaces
            self.listen = listen
            self.tproxyMark = tproxyMark
            self.tproxyTable = tproxyTable
        }
    }

    /// `[log]`: how the supervisor and the workers log (to stderr).
    public struct Log: Sendable, Equatable, Codable {
        /// `format`: `"text"` (default) or `"json"`.
        public var format: LogFormat
        /// `level`: the lowest level logged, one of `levels` (default `"info"`).
        public var level: String

        /// The swift-log levels, lowest first.
        public static let levels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]

        public init(format: LogFormat = .text, level: String = "info") {
            self.format = format
            self.level = level
        }
    }

    /// `[workers]`: how the per-policy worker processes are stopped and restarted.
    public struct Workers: Sendable, Equatable, Codable {
        /// `drain_timeout`: how long a stopping or replaced worker lets its connections
        /// finish, 0s...1h (default 30s).
        public var drainTimeout: TimeSpan
        /// `restart_delay`: the delay before the first restart after a crash, doubled per
        /// further crash, 0s...1m (default 0s).
        public var restartDelay: TimeSpan
        /// `restart_delay_max`: the cap on that delay, at least `restart_delay`, at most 5m
        /// (default 5s, or `restart_delay` if that is longer).
        public var restartDelayMax: TimeSpan
        /// `crash_limit`: more crashes than this within `crashWindow` stop restarting the
        /// policy, 1...1000 (default 5).
        public var crashLimit: Int
        /// `crash_window`: 1s...1h (default 60s).
        public var crashWindow: TimeSpan
        /// `threads`: event loop threads per worker, 0...256; 0 means one per CPU the worker may run on
        /// (affinity mask, cgroup cpuset and quota; default 0).
        public var threads: Int

        public static let drainTimeoutRange = TimeSpan(milliseconds: 0)...TimeSpan.hours(1)
        public static let restartDelayRange = TimeSpan(milliseconds: 0)...TimeSpan.minutes(1)
        public static let restartDelayMaxRange = TimeSpan(milliseconds: 0)...TimeSpan.minutes(5)
        public static let crashLimitRange: ClosedRange<Int64> = 1...1000
        public static let crashWindowRange = TimeSpan.seconds(1)...TimeSpan.hours(1)
        public static let threadsRange: ClosedRange<Int64> = 0...256

        public init(
            drainTimeout: TimeSpan = .seconds(30), restartDelay: TimeSpan = TimeSpan(milliseconds: 0),
            restartDelayMax: TimeSpan = .seconds(5), crashLimit: Int = 5, crashWindow: TimeSpan = .seconds(60),
            threads: Int = 0
        ) {
            self.drainTimeout = drainTimeout
            self.restartDelay = restartDelay
            self.restartDelayMax = restartDelayMax
            self.crashLimit = crashLimit
            self.crashWindow = crashWindow
            self.threads = threads
        }
    }

    /// `[admin]`: how an operator watches and steers the running gateway: the supervisor's
    /// HTTP endpoint (`/metrics`, `/healthz`) and its control socket (`tlsgate status`,
    /// `tlsgate reload`).
    public struct Admin: Sendable, Equatable, Codable {
        /// `listen`: `"ADDRESS:PORT"` (`"[::1]:9464"` for IPv6) where the supervisor serves
        /// `/metrics` and `/healthz`; nil (the default) serves nothing.
        public var listen: AdminAddress?
        /// `allow_remote`: lets `listen` be an address other than loopback (default false:
        /// such a `listen` is refused, so metrics never reach the network by accident).
        public var allowRemote: Bool
        /// `control_socket`: the Unix socket `tlsgate status` and `tlsgate reload` talk to,
        /// an absolute path (default `/run/tlsgate/control.sock`); nil (`""`) for none.
        public var controlSocket: String?

        public static let defaultControlSocket = "/run/tlsgate/control.sock"
        /// The longest path a Unix socket address holds (`sun_path`, without its NUL).
        public static let maximumSocketPathLength = 107

        public init(listen: AdminAddress? = nil, allowRemote: Bool = false, controlSocket: String? = Admin.defaultControlSocket) {
            self.listen = listen
            self.allowRemote = allowRemote
            self.controlSocket = controlSocket
        }
    }

    /// An IP address and a TCP port: `[admin] listen`.
    public struct AdminAddress: Sendable, Equatable, Codable, CustomStringConvertible {
        public var address: IPAddress
        public var port: UInt16

        public init(address: IPAddress, port: UInt16) {
            self.address = address
            self.port = port
        }

        /// `"127.0.0.1:9464"`, `"[::1]:9464"`; nil for anything else (a port of 0 included).
        public init?(_ text: String) {
            let host: Substring
            let portText: Substring
            if text.hasPrefix("[") {
                guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") else { return nil }
                host = text[text.index(after: text.startIndex)..<close]
                portText = text[text.index(close, offsetBy: 2)...]
                guard host.contains(":") else { return nil }
            } else {
                guard let colon = text.lastIndex(of: ":") else { return nil }
                host = text[..<colon]
                portText = text[text.index(after: colon)...]
                guard !host.contains(":") else { return nil }
            }
            guard let address = IPAddress(String(host)), portText.count <= 5, portText.allSatisfy({ ("0"..."9").contains($0) }),
                let port = UInt16(portText), port > 0
            else { return nil }
            self.init(address: address, port: port)
        }

        /// 127.0.0.0/8, ::1, or an IPv4-mapped 127.x address.
        public var isLoopback: Bool {
            let plain = address.unmapped
            if plain.isIPv4 { return plain.bytes[0] == 127 }
            return plain.bytes == [UInt8](repeating: 0, count: 15) + [1]
        }

        public var description: String {
            address.isIPv4 ? "\(address):\(port)" : "[\(address)]:\(port)"
        }
    }

    /// `[dns]`: how often the `[match] hosts` names of the policies are resolved again.
    public struct DNS: Sendable, Equatable, Codable {
        /// `min_refresh`: a name is never asked again sooner than this, whatever its TTL
        /// (and a name that fails is retried after this, doubling up to `max_refresh`);
        /// 1s...1h (default 30s).
        public var minRefresh: TimeSpan
        /// `max_refresh`: a name is asked again at least this often, whatever its TTL (and
        /// this often when its TTL is unknown: names from /etc/hosts or the system
        /// resolver); at least `min_refresh`, at most 24h (default 1h).
        public var maxRefresh: TimeSpan

        public static let minRefreshRange = TimeSpan.seconds(1)...TimeSpan.hours(1)
        public static let maxRefreshRange = TimeSpan.seconds(1)...TimeSpan.hours(24)

        public init(minRefresh: TimeSpan = .seconds(30), maxRefresh: TimeSpan = .hours(1)) {
            self.minRefresh = minRefresh
            self.maxRefresh = maxRefresh
        }
    }

    /// The file this came from, as given.
    public var sourcePath: String
    /// `policies` (required): the folder of policy files, one `*.toml` per policy. A
    /// relative path is taken from the config file's folder; stored resolved that way
    /// (still relative when the config path was). Must exist and be a folder.
    public var policies: String
    /// `user`: the account to switch to when started as root; nil (the default) to stay
    /// who we are. A user name `[a-z_][a-z0-9_-]*` of at most 32 characters; whether the
    /// account exists is checked by the loader's `accountProblem` (`run`, `check`, `rules`).
    public var user: String?
    /// `worker_user`: the account the workers run as (default `"tlsgate-worker"`; see
    /// `WorkerUser`). A name is checked for form here, for existence by the loader's
    /// `accountProblem`, and against the gateway's own account and privileges by `run`.
    public var workerUser: WorkerUser
    public var intercept: Intercept
    public var log: Log
    public var workers: Workers
    public var admin: Admin
    public var dns: DNS

    public init(
        sourcePath: String, policies: String, user: String? = nil, workerUser: WorkerUser = .default,
        intercept: Intercept = Intercept(),
        log: Log = Log(), workers: Workers = Workers(), admin: Admin = Admin(), dns: DNS = DNS()
    ) {
        self.admin = admin
        self.dns = dns
        self.sourcePath = sourcePath
        self.policies = policies
        self.user = user
        self.workerUser = workerUser
        self.intercept = intercept
        self.log = log
        self.workers = workers
    }
}
