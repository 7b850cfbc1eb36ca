import Dispatch
import FoundationEssentials
import Logging
import TLSGatePolicy
import TLSGateSystem

#if canImport(Glibc)
import Glibc
#endif

/// What the executable hands the supervisor for the operator's view (`[admin]`).
public struct AdminOptions: Sendable {
    /// Where the workers' reports and the supervisor's own events are counted; nil: none.
    public var metrics: GatewayMetrics?
    /// The exposition `/metrics` serves.
    public var render: AdminServer.Render?
    /// The control socket, already listening (`UnixSocket.listen`, opened before the
    /// privileges were dropped); nil: none.
    public var controlSocket: Int32?
    /// Its path, removed at a clean stop.
    public var controlSocketPath: String?

    public init(
        metrics: GatewayMetrics? = nil, render: AdminServer.Render? = nil, controlSocket: Int32? = nil,
        controlSocketPath: String? = nil
    ) {
        self.metrics = metrics
        self.render = render
        self.controlSocket = controlSocket
        self.controlSocketPath = controlSocketPath
    }
}

typealias ReloadReply = (ReloadOutcome) -> Void

/// The supervisor's bookkeeping for metrics, `status` and `reload` (touched on its queue only).
struct AdminState {
    var stats = StatsAccumulator()
    var restarts: [String: Int] = [:]
    var rulesApplied = false
    var generation = 0
    var lastResult = "none"
    var lastAt: Double?
    var lastErrors: [String] = []
    var lastFailed: [String] = []
    var waiters: [Int: ReloadReply] = [:]
    var startedAt = Date()
    var server: AdminServer?
    var listener: DispatchSourceRead?
    /// Control connections by a number of their own (a descriptor number is reused).
    var clients: [Int: ControlClientState] = [:]
    var nextClient = 1
    /// The policies whose levels (ready, active) are exported.
    var exported: Set<String> = []
}

/// One `tlsgate status` or `tlsgate reload` connection.
struct ControlClientState {
    let fd: Int32
    var source: DispatchSourceRead
    var buffer: [UInt8] = []
    var answered = false
}

extension Supervisor {
    /// The longest request line on the control socket, and how long a client has to send it.
    static let controlRequestLimit = 64
    static let controlRequestTimeout = DispatchTimeInterval.seconds(5)
    static let controlClientLimit = 16

    // MARK: start and stop

    /// Serves `/metrics` and `/healthz` when `[admin] listen` is set, and the control socket.
    func startAdmin() {
        options.admin.metrics?.started(at: Date().timeIntervalSince1970)
        if let listen = config.admin.listen, let render = options.admin.render {
            do {
                admin.server = try AdminServer(
                    host: listen.address.description, port: Int(listen.port), render: render,
                    health: { [weak self] answer in
                        guard let self else { return answer(["stopping"]) }
                        self.queue.async { answer(self.notReady()) }
                    })
                logger.info("admin endpoint listening", metadata: ["listen": "\(listen)", "paths": "/metrics,/healthz"])
            } catch {
                logger.error(
                    "cannot serve /metrics and /healthz; the gateway runs without them",
                    metadata: ["listen": "\(listen)", "error": "\(error)"])
            }
        }
        if let fd = options.admin.controlSocket {
            let source = DispatchSource.makeReadSource(fileDescriptor: fd, queue: queue)
            source.setEventHandler { [weak self] in self?.acceptControlClients(fd) }
            source.setCancelHandler { close(fd) }
            source.resume()
            admin.listener = source
            logger.info("control socket listening", metadata: ["path": "\(options.admin.controlSocketPath ?? "?")"])
        }
    }

    func stopAdmin() {
        for (_, reply) in admin.waiters { reply(ReloadOutcome(result: "stopping", generation: admin.generation)) }
        admin.waiters = [:]
        admin.listener?.cancel()
        admin.listener = nil
        if let path = options.admin.controlSocketPath { unlink(path) }
        admin.server?.close()
        admin.server = nil
    }

    // MARK: what workers report, what happens to them

    /// A worker's `stats` line: its increments go to the metrics; a total that went down
    /// is a broken worker.
    func statsReported(_ id: WorkerTable.WorkerID, _ totals: [String: UInt64]) -> WorkerTable.Input? {
        guard let worker = table.workers[id] else { return nil }
        switch admin.stats.add(worker: id, policy: worker.policy, totals: totals) {
        case .success(let increments):
            options.admin.metrics?.add(policy: worker.policy, increments: increments)
            return nil
        case .failure(let error):
            return .misbehaved(id, reason: "\(error)")
        }
    }

    /// Before the table hears a worker exited: its last reports are read, an unexpected
    /// exit counts as a restart, and its share of `active` goes.
    func workerExiting(_ id: WorkerTable.WorkerID) {
        if let process = processes[id], process.source != nil {
            // Bounded: the channel's buffer holds a few lines at most.
            for _ in 0..<64 {
                let before = processes[id]?.buffer.count ?? 0
                readReports(id: id)
                guard let after = processes[id], after.source != nil, after.buffer.count != before || before == 0 else { break }
                var probe = pollfd(fd: after.channel, events: Int16(POLLIN), revents: 0)
                if poll(&probe, 1, 0) <= 0 { break }
            }
        }
        if let worker = table.workers[id], !table.stopping {
            let crashed = worker.state == .current || (worker.state == .starting && table.current(worker.policy) == nil)
            if crashed {
                admin.restarts[worker.policy, default: 0] += 1
                options.admin.metrics?.workerRestarted(policy: worker.policy)
            }
        }
        admin.stats.remove(worker: id)
    }

    func rulesApplied(_ ok: Bool) {
        admin.rulesApplied = ok
        options.admin.metrics?.rulesApplied(ok)
    }

    /// The levels after every change: each policy's readiness and open connections.
    func updateLevels() {
        guard let metrics = options.admin.metrics else { return }
        let live = Set(table.policies).union(table.disabled.keys)
        for name in live {
            metrics.setReady(policy: name, table.current(name) != nil)
            metrics.setActive(policy: name, admin.stats.active(policy: name))
        }
        for gone in admin.exported.subtracting(live) { metrics.removePolicy(gone) }
        admin.exported = live
    }

    // MARK: health and status

    /// Why the gateway is not ready (`/healthz` 503): empty when every policy has a ready
    /// worker and the rules are in force.
    func notReady() -> [String] {
        if table.stopping { return ["the gateway is stopping"] }
        var problems: [String] = []
        if !admin.rulesApplied { problems.append("the nftables rules are not applied") }
        for name in table.policies where table.current(name) == nil {
            problems.append("policy \(name): no ready worker")
        }
        for name in table.disabled.keys.sorted() {
            problems.append("policy \(name): disabled after repeated crashes (its traffic is rejected until a reload)")
        }
        return problems
    }

    func status() -> GatewayStatus {
        let now = DispatchTime.now().uptimeNanoseconds / 1_000_000
        let names = Set(table.policies).union(table.disabled.keys).sorted()
        let problems = notReady()
        let policies = names.map { name -> GatewayStatus.Policy in
            let workers = table.workers.values.filter { $0.policy == name }.sorted { $0.id < $1.id }.map { worker in
                let state: String
                switch worker.state {
                case .starting: state = "starting"
                case .current: state = "serving"
                case .leaving: state = "leaving"
                }
                return GatewayStatus.Worker(
                    pid: worker.pid, state: state, uptimeSeconds: Double(now - min(now, worker.spawnedAt)) / 1000,
                    activeConnections: admin.stats.active(worker: worker.id))
            }
            let state = table.disabled[name] != nil ? "disabled" : table.current(name) != nil ? "ready" : "starting"
            return GatewayStatus.Policy(
                name: name, listenPort: sockets[name]?.port, matchPort: sources[name]?.match.port, state: state,
                restarts: admin.restarts[name] ?? 0, activeConnections: admin.stats.active(policy: name), workers: workers)
        }
        return GatewayStatus(
            pid: getpid(), config: config.sourcePath, state: table.stopping ? "stopping" : "running",
            uptimeSeconds: Date().timeIntervalSince(admin.startedAt), ready: problems.isEmpty, notReady: problems,
            rulesApplied: admin.rulesApplied,
            reload: GatewayStatus.Reload(
                generation: admin.generation, lastResult: admin.waiters.isEmpty ? admin.lastResult : "pending",
                lastAt: admin.lastAt, errors: admin.lastErrors, failed: admin.lastFailed),
            policies: policies,
            hosts: hostSchedule.entries.sorted { $0.key < $1.key }.map { name, entry in
                GatewayStatus.Host(
                    name: name, addresses: entry.addresses, ttlSeconds: entry.ttl,
                    nextRefreshSeconds: Double(entry.due > now ? entry.due - now : 0) / 1000, error: entry.error,
                    consecutiveFailures: entry.consecutiveFailures, failures: entry.failures)
            })
    }

    // MARK: reload results

    func reloadRefused(_ errors: [String], reply: ReloadReply?) {
        admin.lastResult = "refused"
        admin.lastAt = Date().timeIntervalSince1970
        admin.lastErrors = errors
        admin.lastFailed = []
        options.admin.metrics?.reloaded(live: false, accepted: false, at: Date().timeIntervalSince1970)
        reply?(ReloadOutcome(result: "refused", errors: errors, generation: admin.generation))
    }

    /// The new config was taken: `ticket` is the table's name for this reload.
    func reloadAccepted(ticket: Int, reply: ReloadReply?) {
        admin.generation += 1
        if let reply { admin.waiters[ticket] = reply }
    }

    func reloadFinished(ticket: Int, added: [String], changed: [String], removed: [String], failed: [String]) {
        let live = failed.isEmpty
        admin.lastResult = live ? "live" : "failed"
        admin.lastAt = Date().timeIntervalSince1970
        admin.lastErrors = []
        admin.lastFailed = failed
        options.admin.metrics?.reloaded(live: live, accepted: true, at: Date().timeIntervalSince1970)
        admin.waiters.removeValue(forKey: ticket)?(
            ReloadOutcome(
                result: live ? "live" : "failed", failed: failed, added: added, changed: changed, removed: removed,
                generation: admin.generation))
    }

    // MARK: the control socket

    private func acceptControlClients(_ listener: Int32) {
        for _ in 0..<Self.controlClientLimit {
            guard let fd = UnixSocket.accept(listener) else { return }
            // The socket is 0600, so only our account and root reach it; the peer's uid
            // is checked all the same.
            guard admin.clients.count < Self.controlClientLimit,
                let uid = UnixSocket.peerUID(fd), uid == 0 || uid == getuid()
            else {
                close(fd)
                continue
            }
            let id = admin.nextClient
            admin.nextClient += 1
            let source = DispatchSource.makeReadSource(fileDescriptor: fd, queue: queue)
            source.setEventHandler { [weak self] in self?.readControlRequest(id) }
            source.setCancelHandler { close(fd) }
            admin.clients[id] = ControlClientState(fd: fd, source: source)
            source.resume()
            queue.asyncAfter(deadline: .now() + Self.controlRequestTimeout) { [weak self] in
                guard let self, let client = self.admin.clients[id], !client.answered else { return }
                self.endControlClient(id)
            }
        }
    }

    private func readControlRequest(_ id: Int) {
        guard var client = admin.clients[id] else { return }
        var chunk = [UInt8](repeating: 0, count: Self.controlRequestLimit)
        let n = chunk.withUnsafeMutableBytes { read(client.fd, $0.baseAddress, $0.count) }
        if n < 0 && (errno == EAGAIN || errno == EINTR) { return }
        // Gone (or more after its request, which is not allowed): drop it; a reload it
        // asked for goes on without it.
        guard n > 0, !client.answered else { return endControlClient(id) }
        client.buffer += chunk[0..<n]
        guard let newline = client.buffer.firstIndex(of: 0x0a) else {
            admin.clients[id] = client
            if client.buffer.count >= Self.controlRequestLimit { endControlClient(id) }
            return
        }
        client.answered = true
        admin.clients[id] = client
        let request = String(decoding: client.buffer[..<newline], as: UTF8.self)
        switch request {
        case "status":
            answer(id, status())
        case "reload":
            logger.info("reload requested on the control socket")
            reload { [weak self] outcome in self?.answer(id, outcome) }
        default:
            answer(id, ["error": "unknown request: send \"status\" or \"reload\""])
        }
    }

    private func answer<T: Encodable>(_ id: Int, _ value: T) {
        guard let fd = admin.clients[id]?.fd else { return }
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.outputFormatting = [.sortedKeys]
        if var data = try? encoder.encode(value) {
            data.append(0x0a)
            // Blocking, with a deadline: a client that does not read is dropped.
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)
            var deadline = timeval(tv_sec: 2, tv_usec: 0)
            _ = setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &deadline, socklen_t(MemoryLayout<timeval>.size))
            var offset = 0
            data.withUnsafeBytes { bytes in
                while offset < bytes.count {
                    let n = write(fd, bytes.baseAddress! + offset, bytes.count - offset)
                    if n < 0 && errno == EINTR { continue }
                    if n <= 0 { break }
                    offset += n
                }
            }
        }
        endControlClient(id)
    }

    private func endControlClient(_ id: Int) {
        guard let client = admin.clients.removeValue(forKey: id) else { return }
        client.source.cancel()  // closes fd
    }
}
