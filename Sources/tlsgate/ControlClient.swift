import FoundationEssentials

#if canImport(Glibc)
import Glibc
#endif
import TLSGatePolicy
import TLSGateSystem

#if canImport(Glibc)
import Glibc
#endif

/// The client side of the supervisor's control socket (`tlsgate status`, `tlsgate reload`):
/// one request line, one JSON answer, then the supervisor closes.
enum ControlClient {
    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    /// The control socket of the gateway `config` describes.
    static func socketPath(config path: String) throws -> String {
        let (loaded, diagnostics) = GatewayConfigLoader.load(path)
        guard let config = loaded else {
            let errors = diagnostics.filter(\.isError).map { "\($0)" }.joined(separator: "\n")
            throw Failure(description: "cannot read \(path) to find the control socket:\n\(errors)")
        }
        guard let socket = config.admin.controlSocket else {
            throw Failure(description: "\(path) sets [admin] control_socket = \"\": the gateway has no control socket")
        }
        return socket
    }

    /// Sends `request` and returns the answer, waiting at most `timeout` seconds.
    static func ask(_ request: String, socket path: String, timeout: Double) throws -> Data {
        let fd: Int32
        do {
            fd = try UnixSocket.connect(path: path)
        } catch {
            let hint: String
            switch error.errno {
            case ENOENT, ECONNREFUSED: hint = "no gateway is running (is `tlsgate run` started, with this config?)"
            case EACCES, EPERM: hint = "permission denied: run as root or as the gateway's account"
            default: hint = "\(error)"
            }
            throw Failure(description: "cannot reach the gateway's control socket \(path): \(hint)")
        }
        defer { close(fd) }
        let line = Array((request + "\n").utf8)
        guard line.withUnsafeBytes({ write(fd, $0.baseAddress, $0.count) }) == line.count else {
            throw Failure(description: "cannot send to the control socket \(path): \(SystemError("write"))")
        }
        var answer = Data()
        let deadline = Date().addingTimeInterval(timeout)
        var chunk = [UInt8](repeating: 0, count: 65536)
        while answer.count < 16 << 20 {
            let left = deadline.timeIntervalSinceNow
            guard left > 0 else { throw Failure(description: "no answer from the gateway within \(Int(timeout))s") }
            var waiting = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&waiting, 1, Int32(min(left, 1) * 1000) + 1)
            if ready < 0 && errno == EINTR { continue }
            if ready <= 0 { continue }
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            answer.append(contentsOf: chunk[0..<n])
        }
        guard !answer.isEmpty else {
            throw Failure(description: "the gateway closed the control connection without an answer (is it stopping?)")
        }
        return answer
    }

    static func decode<T: Decodable>(_ type: T.Type, _ data: Data) throws -> T {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        do {
            return try decoder.decode(type, from: data)
        } catch {
            throw Failure(description: "unexpected answer from the gateway: \(String(decoding: data.prefix(200), as: UTF8.self))")
        }
    }
}
