import CTLSGateLinux

#if canImport(Glibc)
import Glibc
#endif

/// How many CPUs this process may actually use, and why: the machine's cores limited by
/// the affinity mask (systemd `CPUAffinity=`, `taskset`), the cgroup's cpuset and its CPU
/// quota (cgroup v2 `cpu.max`, v1 `cpu.cfs_quota_us`). `[workers] threads = 0` means one
/// event loop per CPU counted here: two loops on one usable core cost throughput and
/// triple the tail latency (issue 10).
public struct CPUs: Sendable, Equatable, CustomStringConvertible {
    /// Online cores of the machine.
    public var machine: Int
    /// CPUs in the affinity mask, when it could be read.
    public var affinity: Int?
    /// CPUs in the cgroup's effective cpuset, when one is set.
    public var cpuset: Int?
    /// The cgroup CPU quota in CPUs (1.5 = 150 ms per 100 ms), when one is set.
    public var quota: Double?

    public init(machine: Int, affinity: Int? = nil, cpuset: Int? = nil, quota: Double? = nil) {
        self.machine = machine
        self.affinity = affinity
        self.cpuset = cpuset
        self.quota = quota
    }

    /// The usable CPUs: the least of the limits, a quota rounded up, never below 1.
    public var usable: Int {
        var n = max(1, machine)
        if let affinity, affinity > 0 { n = min(n, affinity) }
        if let cpuset, cpuset > 0 { n = min(n, cpuset) }
        if let quota, quota > 0 { n = min(n, Int(quota.rounded(.up))) }
        return max(1, n)
    }

    /// "2 of 8 (affinity 2, cpuset 8, quota none)", for the worker's start line.
    public var description: String {
        func text(_ v: Int?) -> String { v.map(String.init) ?? "none" }
        let q = quota.map { q -> String in
            let hundredths = Int((q * 100).rounded())
            return hundredths % 100 == 0 ? "\(hundredths / 100)" : "\(hundredths / 100).\(hundredths % 100 < 10 ? "0" : "")\(hundredths % 100)"
        } ?? "none"
        return "\(usable) of \(machine) (affinity \(text(affinity)), cpuset \(text(cpuset)), quota \(q))"
    }

    /// What this process may use right now.
    public static func current() -> CPUs {
        let online = Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))
        let affinityCount = Int(tg_linux_affinity_cpu_count())
        var result = CPUs(machine: max(1, online), affinity: affinityCount > 0 ? affinityCount : nil)
        let paths = cgroupPaths(readFile("/proc/self/cgroup") ?? "")
        if let v2 = paths.unified {
            let dir = "/sys/fs/cgroup" + (v2 == "/" ? "" : v2)
            result.cpuset = readFile(dir + "/cpuset.cpus.effective").flatMap(parseCPUList)
            result.quota = readFile(dir + "/cpu.max").flatMap(parseCPUMax)
        }
        if let v1 = paths.cpuset, result.cpuset == nil {
            for root in ["/sys/fs/cgroup/cpuset", "/sys/fs/cgroup/cpuset,cpu"] {
                if let list = readFile(root + (v1 == "/" ? "" : v1) + "/cpuset.effective_cpus").flatMap(parseCPUList) {
                    result.cpuset = list
                    break
                }
            }
        }
        if let v1 = paths.cpu, result.quota == nil {
            for root in ["/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/cpu"] {
                let dir = root + (v1 == "/" ? "" : v1)
                if let quota = readFile(dir + "/cpu.cfs_quota_us"), let period = readFile(dir + "/cpu.cfs_period_us") {
                    result.quota = parseCFS(quota: quota, period: period)
                    break
                }
            }
        }
        return result
    }

    // MARK: parsing (pure, unit-tested)

    /// Counts the CPUs of a kernel CPU list such as "0-3,8,10-11\n"; nil when malformed or empty.
    public static func parseCPUList(_ text: String) -> Int? {
        let trimmed = text.filter { !$0.isWhitespace }
        guard !trimmed.isEmpty else { return nil }
        var count = 0
        for part in trimmed.split(separator: ",", omittingEmptySubsequences: false) {
            let bounds = part.split(separator: "-", omittingEmptySubsequences: false)
            switch bounds.count {
            case 1:
                guard Int(bounds[0]) != nil else { return nil }
                count += 1
            case 2:
                guard let low = Int(bounds[0]), let high = Int(bounds[1]), low >= 0, high >= low else { return nil }
                count += high - low + 1
            default:
                return nil
            }
        }
        return count
    }

    /// cgroup v2 `cpu.max` ("150000 100000", "max 100000", "max"): the quota in CPUs, or
    /// nil when unlimited or malformed.
    public static func parseCPUMax(_ text: String) -> Double? {
        let fields = text.split(whereSeparator: { $0.isWhitespace })
        guard let first = fields.first, first != "max", let quota = Double(first), quota > 0 else { return nil }
        let period = fields.count > 1 ? Double(fields[1]) : 100_000
        guard let period, period > 0 else { return nil }
        return quota / period
    }

    /// cgroup v1 `cpu.cfs_quota_us` and `cpu.cfs_period_us`: the quota in CPUs, nil when -1.
    public static func parseCFS(quota: String, period: String) -> Double? {
        guard let q = Double(quota.filter { !$0.isWhitespace }), q > 0,
            let p = Double(period.filter { !$0.isWhitespace }), p > 0
        else { return nil }
        return q / p
    }

    /// The cgroup paths of `/proc/self/cgroup`: the v2 one ("0::/path") and the v1 `cpu`
    /// and `cpuset` controllers' ("4:cpu,cpuacct:/path").
    public static func cgroupPaths(_ text: String) -> (unified: String?, cpu: String?, cpuset: String?) {
        var unified: String?, cpu: String?, cpuset: String?
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard fields.count == 3 else { continue }
            let path = String(fields[2])
            if fields[0] == "0" && fields[1].isEmpty {
                unified = path
                continue
            }
            let controllers = fields[1].split(separator: ",")
            if controllers.contains("cpu") { cpu = path }
            if controllers.contains("cpuset") { cpuset = path }
        }
        return (unified, cpu, cpuset)
    }

    /// A small file's text (at most 4 KiB), or nil.
    static func readFile(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: 4096)
        var used = 0
        while used < bytes.count {
            let n = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress! + used, $0.count - used) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            used += n
        }
        return String(decoding: bytes[..<used], as: UTF8.self)
    }
}
