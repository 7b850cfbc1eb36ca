import ArgumentParser
import FoundationEssentials

#if canImport(Glibc)
import Glibc
#endif
import TLSGateSupervisor

/// `tlsgate status`: the running gateway, from its supervisor's control socket.
struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show the running gateway: policies, ports, workers, restarts, connections, last reload.",
        discussion: """
            Asks the supervisor over its control socket ([admin] control_socket in the config, \
            default /run/tlsgate/control.sock; root or the gateway's account). Exit status 0 \
            when the gateway answered and is ready, 3 when it answered but is not ready (the \
            reasons /healthz gives), 1 when no gateway answers.
            """
    )

    @Option(help: ArgumentHelp("The gateway's config file (to find the control socket).", valueName: "file"))
    var config: String = TLSGateDefaults.configPath

    @Flag(help: "Print the supervisor's answer as JSON.")
    var json = false

    func run() throws {
        let data: Data
        let status: GatewayStatus
        do {
            let socket = try ControlClient.socketPath(config: config)
            data = try ControlClient.ask("status", socket: socket, timeout: 10)
            status = try ControlClient.decode(GatewayStatus.self, data)
        } catch {
            StandardStream.error("tlsgate status: \(error)\n")
            throw ExitCode(1)
        }
        if json {
            data.withUnsafeBytes { StandardStream.write(STDOUT_FILENO, $0) }
        } else {
            print(Self.table(status), terminator: "")
        }
        if !status.ready { throw ExitCode(3) }
    }

    /// The human form: a summary, then one row per worker (a policy without one gets a row).
    static func table(_ status: GatewayStatus) -> String {
        var out = "gateway pid \(status.pid), \(status.state), up \(duration(status.uptimeSeconds)), config \(status.config)\n"
        out += "ready: \(status.ready ? "yes" : "no")" + (status.ready ? "" : " (" + status.notReady.joined(separator: "; ") + ")") + "\n"
        out += "rules applied: \(status.rulesApplied ? "yes" : "no")\n"
        let reload = status.reload
        var last = "last reload: \(reload.lastResult)"
        if let at = reload.lastAt {
            last += " at " + Date(timeIntervalSince1970: at).formatted(.iso8601)
        }
        last += ", generation \(reload.generation)"
        if !reload.failed.isEmpty { last += ", failed: " + reload.failed.joined(separator: ",") }
        out += last + "\n"
        for error in reload.errors { out += "  \(error)\n" }
        var rows = [["POLICY", "STATE", "MATCH", "LISTEN", "PID", "WORKER", "UPTIME", "RESTARTS", "ACTIVE"]]
        for policy in status.policies {
            let base = [
                policy.name, policy.state, policy.matchPort.map { "\($0)" } ?? "-", policy.listenPort.map { "\($0)" } ?? "-",
            ]
            if policy.workers.isEmpty {
                rows.append(base + ["-", "-", "-", "\(policy.restarts)", "\(policy.activeConnections)"])
            }
            for worker in policy.workers {
                rows.append(
                    base + [
                        worker.pid.map { "\($0)" } ?? "-", worker.state, duration(worker.uptimeSeconds), "\(policy.restarts)",
                        "\(worker.activeConnections)",
                    ])
            }
        }
        out += columns(rows)
        if !status.hosts.isEmpty {
            out += "\n"
            var hostRows = [["HOST", "ADDRESSES", "TTL", "NEXT", "DNS"]]
            for host in status.hosts {
                let state = host.error.map { "failing (\(host.consecutiveFailures) in a row, keeping the last addresses): \($0)" } ?? "ok"
                hostRows.append([
                    host.name, host.addresses.isEmpty ? "-" : host.addresses.joined(separator: ","),
                    host.ttlSeconds.map { "\($0)s" } ?? "-", duration(host.nextRefreshSeconds), state,
                ])
            }
            out += columns(hostRows)
        }
        return out
    }

    /// Rows as left-aligned columns two spaces apart.
    static func columns(_ rows: [[String]]) -> String {
        let widths = rows[0].indices.map { column in rows.map { $0[column].count }.max() ?? 0 }
        return rows.map { row in
            let line = row.enumerated().map { $1 + String(repeating: " ", count: max(0, widths[$0] - $1.count)) }
                .joined(separator: "  ")
            return String(line.reversed().drop(while: { $0 == " " }).reversed()) + "\n"
        }.joined()
    }

    /// `42s`, `3m05s`, `2h03m`, `4d02h`.
    static func duration(_ seconds: Double) -> String {
        let s = Int(seconds)
        if s < 60 { return "\(s)s" }
        if s < 3600 { return "\(s / 60)m\(twoDigits(s % 60))s" }
        if s < 86400 { return "\(s / 3600)h\(twoDigits(s % 3600 / 60))m" }
        return "\(s / 86400)d\(twoDigits(s % 86400 / 3600))h"
    }

    private static func twoDigits(_ n: Int) -> String {
        n < 10 ? "0\(n)" : "\(n)"
    }
}
