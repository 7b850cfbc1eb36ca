import Foundation

/// Paths of the fixture folders (computed from this file's path, not SwiftPM resources)
/// and a scratch folder for policies written by tests.
enum Fixtures {
    /// `Tests/TLSGatePolicyTests/Fixtures`.
    static let directory: String = {
        let here = URL(fileURLWithPath: #filePath)
        return here.deletingLastPathComponent().appendingPathComponent("Fixtures").path
    }()

    static var valid: String { directory + "/valid" }
    static var broken: String { directory + "/broken" }

    /// The repository's `Policies/` folder with the shipped examples.
    static let shippedPolicies: String = {
        let here = URL(fileURLWithPath: #filePath)
        return here.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Policies").path
    }()

    /// A fresh empty folder under the system temp folder.
    static func makeTemporaryDirectory() throws -> String {
        var base = NSTemporaryDirectory()
        while base.count > 1 && base.hasSuffix("/") { base.removeLast() }
        var template = Array((base + "/tlsgate-policy-tests.XXXXXX").utf8CString)
        guard let result = mkdtemp(&template) else {
            throw CocoaError(.fileWriteUnknown)
        }
        return String(cString: result)
    }

    /// Writes `files` (name → contents) into a fresh folder and returns its path.
    static func folder(_ files: [String: String]) throws -> String {
        let directory = try makeTemporaryDirectory()
        for (name, contents) in files {
            try contents.write(toFile: directory + "/" + name, atomically: false, encoding: .utf8)
        }
        return directory
    }

    static func remove(_ path: String) {
        try? FileManager.default.removeItem(atPath: path)
    }
}
