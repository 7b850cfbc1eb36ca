import CTLSGateLinux

#if canImport(Glibc)
import Glibc
#endif

/// Process privileges: capabilities through libcap and prctl. All capability code lives here.
public enum Privileges {
    public struct Failure: Error, Sendable, CustomStringConvertible {
        public let description: String
    }

    /// A worker's demotion: no capabilities in any set, no way to gain any (no_new_privs),
    /// and not dumpable (no core file with TLS keys, no ptrace by a process of the same uid).
    public static func dropAllForWorker() throws {
        if tg_linux_set_dumpable(0) != 0 {
            throw Failure(description: "cannot clear the dumpable flag: \(String(cString: strerror(errno)))")
        }
        if tg_linux_caps_drop_all() != 0 {
            throw Failure(description: "cannot drop capabilities: \(String(cString: strerror(errno)))")
        }
        if tg_linux_set_no_new_privs() != 0 {
            throw Failure(description: "cannot set no_new_privs: \(String(cString: strerror(errno)))")
        }
    }

    /// Exit when the parent (the supervisor) dies.
    public static func exitWithParent() {
        _ = tg_linux_set_pdeathsig(SIGTERM)
    }

    public static var noNewPrivs: Bool { tg_linux_get_no_new_privs() == 1 }
    public static var isDumpable: Bool { tg_linux_get_dumpable() != 0 }
    /// Whether this process holds any capability (permitted, effective or ambient) now.
    /// A worker asks before dropping them: the supervisor spawns it with none.
    public static var holdsAnyCapability: Bool { tg_linux_caps_any_held() != 0 }
    public static var hasNetAdmin: Bool { tg_linux_caps_have_net_admin() == 1 }
}

extension Privileges {
    /// The account the gateway runs as.
    public struct Account: Sendable, Equatable {
        public let name: String
        public let uid: UInt32
        public let gid: UInt32

        public init(name: String, uid: UInt32, gid: UInt32) {
            self.name = name
            self.uid = uid
            self.gid = gid
        }
    }

    public static func lookup(user name: String) throws -> Account {
        guard let entry = getpwnam(name) else {
            throw Failure(description: "no account named \"\(name)\": create it (useradd --system --no-create-home --shell /usr/sbin/nologin \(name)) or name another account")
        }
        return Account(name: name, uid: entry.pointee.pw_uid, gid: entry.pointee.pw_gid)
    }

    public static var isRoot: Bool { geteuid() == 0 }
    public static var hasSysAdmin: Bool { tg_linux_caps_have_sys_admin() == 1 }

    /// Whether CAP_SETUID, CAP_SETGID and CAP_KILL are effective: what the supervisor
    /// needs to start its workers under another account (`worker_user`), check files as
    /// that account and signal them.
    public static var canRunWorkersAsAnotherAccount: Bool { tg_linux_caps_have_worker_account_caps() == 1 }

    /// Started as root: become `account`, keeping CAP_NET_ADMIN (permitted, effective, and
    /// ambient so that the `nft` and `ip` tools the supervisor runs have it too) and, with
    /// `workerAccounts`, CAP_SETUID, CAP_SETGID and CAP_KILL in the permitted and effective
    /// sets only (to start and signal workers of another account; never ambient); every
    /// other capability leaves every set, the bounding set included.
    public static func becomeGateway(_ account: Account, workerAccounts: Bool) throws {
        if tg_linux_bound_to_gateway(workerAccounts ? 1 : 0) != 0 {
            throw Failure(description: "cannot shrink the capability bounding set: \(String(cString: strerror(errno)))")
        }
        if tg_linux_switch_user_keep_caps(account.uid, account.gid) != 0 {
            throw Failure(description: "cannot switch to \(account.name) (uid \(account.uid)): \(String(cString: strerror(errno)))")
        }
        // The uid change cleared the effective set; what is kept is still permitted.
        if tg_linux_caps_limit(1, workerAccounts ? 1 : 0, 1) != 0 {
            throw Failure(description: "cannot keep CAP_NET_ADMIN as \(account.name): \(String(cString: strerror(errno)))")
        }
        guard hasNetAdmin else {
            throw Failure(description: "CAP_NET_ADMIN was lost switching to \(account.name)")
        }
        if workerAccounts && !canRunWorkersAsAnotherAccount {
            throw Failure(description: "CAP_SETUID, CAP_SETGID or CAP_KILL was lost switching to \(account.name)")
        }
    }

    /// Started without root (systemd with AmbientCapabilities=CAP_NET_ADMIN, plus
    /// CAP_SETUID CAP_SETGID CAP_KILL for `workerAccounts`): check that they are there, keep
    /// CAP_NET_ADMIN ambient and lower the others to permitted and effective only.
    public static func keepGatewayCapabilities(workerAccounts: Bool) throws {
        guard hasNetAdmin else {
            throw Failure(description: """
                CAP_NET_ADMIN is missing: the gateway needs it for its nftables table. Run it from the \
                systemd unit (AmbientCapabilities=CAP_NET_ADMIN CAP_SETUID CAP_SETGID CAP_KILL), or start it as root with user = set in the config
                """)
        }
        if workerAccounts && !canRunWorkersAsAnotherAccount {
            throw Failure(description: """
                CAP_SETUID, CAP_SETGID or CAP_KILL is missing: the gateway needs them to run its workers under \
                worker_user. Run it from the systemd unit, or start it as root with user = set in the config
                """)
        }
        if tg_linux_caps_limit(1, workerAccounts ? 1 : 0, 1) != 0 {
            throw Failure(description: "cannot limit capabilities: \(String(cString: strerror(errno)))")
        }
    }

    /// Raises the open-file limit to the hard limit; returns it.
    @discardableResult
    public static func raiseFileLimit() -> Int {
        Int(tg_linux_raise_nofile_limit())
    }
}

extension Privileges {
    /// Why `account` cannot open `path` for reading, or nil when it can. Checked the way a
    /// worker opens it (that uid and gid, no supplementary groups) without changing who
    /// this process is; see `tg_linux_readable_as`.
    /// Runs `body` with this thread opening files as `account` (its uid and gid, no
    /// supplementary group, as a worker of that account; `tg_linux_fs_identity_enter`), then
    /// back. Without the privilege to switch (or when already switched on this thread),
    /// `body` runs as this process (it is told: `switched` false): files the account
    /// cannot read are reported by `readProblem` all the same. `body` must not move to
    /// another thread.
    public static func withFileIdentity<T>(of account: Account, _ body: (_ switched: Bool) throws -> T) rethrows -> T {
        let entered = tg_linux_fs_identity_enter(account.uid, account.gid) == 0
        defer { if entered { tg_linux_fs_identity_leave() } }
        return try body(entered)
    }

    public static func readProblem(_ path: String, as account: Account) -> String? {
        let code = tg_linux_readable_as(path, account.uid, account.gid)
        guard code != 0 else { return nil }
        return String(cString: strerror(code))
    }
}
