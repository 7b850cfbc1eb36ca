import FoundationEssentials
import TLSGateFirewall

/// Runs the `ip` tool for TPROXY's policy routing.
public enum IPRoute {
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    public static func run(_ arguments: [String]) throws {
        let path = Tool.find(["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"]) ?? "/sbin/ip"
        let result = try Tool.run(path, arguments)
        guard result.status == 0 else {
            throw Failure(description: "ip \(arguments.joined(separator: " ")): \(result.message)")
        }
    }
}
