import CTLSGateLinux

#if canImport(Glibc)
import Glibc
#endif

/// Process privileges: capabilities through libcap and prctl. All capability code lives here.
public enum Privileges {
    public struct Failure: Error, Sendable, CustomStringConvertible {
        public let description: String
    }

    /// A worker's demotion: no capabilities in any set, and no way to gain any (no_new_privs).
    public static func dropAllForWorker() throws {
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
    public static var hasNetAdmin: Bool { tg_linux_caps_have_net_admin() == 1 }
}
