#if canImport(Glibc)
import Glibc
#endif

/// `tlsgate-fuzz TARGET FILE|DIR...`: runs every file once through the target (a corpus or a
/// crash input, without libFuzzer: the ordinary debug build, a regression replay).
enum FuzzReplay {
    static func run(_ arguments: [String]) -> Int32 {
        let names = FuzzTarget.allCases.map(\.rawValue).joined(separator: "|")
        guard arguments.count >= 3, let target = FuzzTarget(rawValue: arguments[1]) else {
            printError("usage: tlsgate-fuzz \(names) FILE|DIR...\n")
            return 2
        }
        var count = 0
        for path in arguments.dropFirst(2) {
            for file in files(path) {
                guard let bytes = read(file) else {
                    printError("tlsgate-fuzz: cannot read \(file)\n")
                    return 1
                }
                target.run(bytes)
                count += 1
            }
        }
        print("tlsgate-fuzz: \(target.rawValue): \(count) inputs replayed, no crash")
        return 0
    }

    /// The regular files of a folder (sorted), or the path itself.
    static func files(_ path: String) -> [String] {
        guard let dir = opendir(path) else { return [path] }
        defer { closedir(dir) }
        var out: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
            if name.hasPrefix(".") { continue }
            out.append(path + "/" + name)
        }
        return out.sorted()
    }

    static func read(_ path: String) -> [UInt8]? {
        guard let file = fopen(path, "rb") else { return nil }
        defer { fclose(file) }
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = fread(&buffer, 1, buffer.count, file)
            if n > 0 { out += buffer[0..<n] }
            if n < buffer.count { break }
        }
        return out
    }
}

/// One line on standard error.
func printError(_ text: String) {
    _ = text.withCString { write(2, $0, strlen($0)) }
}
