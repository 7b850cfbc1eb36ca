#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Reads small text files with errors that say why (`No such file or directory`).
enum TextFile {
    struct ReadError: Error {
        /// e.g. `No such file or directory`, `is a directory`, `is larger than 1048576 bytes`.
        let reason: String
    }

    /// The bytes of the file at `path`, at most `limit` of them.
    static func readBytes(_ path: String, limit: Int) throws(ReadError) -> [UInt8] {
        // O_NONBLOCK: opening a FIFO (a `*.toml` or a CA file that is one) must not wait for
        // a writer; it is refused below. On a regular file the flag changes nothing.
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)
        guard fd >= 0 else { throw ReadError(reason: String(cString: strerror(errno))) }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw ReadError(reason: String(cString: strerror(errno))) }
        switch info.st_mode & S_IFMT {
        case S_IFREG: break
        case S_IFDIR: throw ReadError(reason: "is a directory")
        case S_IFIFO: throw ReadError(reason: "is a FIFO, not a regular file")
        case S_IFSOCK: throw ReadError(reason: "is a socket, not a regular file")
        default: throw ReadError(reason: "is a device, not a regular file")
        }
        if Int(info.st_size) > limit { throw ReadError(reason: "is larger than \(limit) bytes") }
        var result: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                throw ReadError(reason: String(cString: strerror(errno)))
            }
            if count == 0 { return result }
            result.append(contentsOf: chunk[0..<count])
            if result.count > limit { throw ReadError(reason: "is larger than \(limit) bytes") }
        }
    }

    /// The file as UTF-8 text.
    static func readText(_ path: String, limit: Int) throws(ReadError) -> String {
        let bytes = try readBytes(path, limit: limit)
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw ReadError(reason: "is not UTF-8 text")
        }
        return text
    }

    /// What is at `path`: nil if nothing (or unreachable), else whether it is a directory.
    static func isDirectory(_ path: String) -> Bool? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        return (info.st_mode & S_IFMT) == S_IFDIR
    }

    /// The current directory, for making paths absolute.
    static func currentDirectory() -> String {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        guard getcwd(&buffer, buffer.count) != nil else { return "/" }
        return buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }
}

/// Path helpers on plain strings (no Foundation URL normalisation surprises).
enum PathText {
    /// The directory part of `path`: `"Policies"` for `"Policies/a.toml"`, `"."` for `"a.toml"`.
    static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        if slash == path.startIndex { return "/" }
        return String(path[..<slash])
    }

    /// `"a.toml"` → `"a"`, `"dir/a.b.toml"` → `"a.b"`.
    static func stem(of path: String) -> String {
        let file = path.lastIndex(of: "/").map { String(path[path.index(after: $0)...]) } ?? path
        guard let dot = file.lastIndex(of: "."), dot != file.startIndex else { return file }
        return String(file[..<dot])
    }

    /// `path` resolved against `directory` unless it is absolute; `"./"` prefixes dropped.
    static func join(_ directory: String, _ path: String) -> String {
        if path.hasPrefix("/") { return path }
        if directory == "." || directory.isEmpty { return path }
        return directory.hasSuffix("/") ? directory + path : directory + "/" + path
    }

    /// An absolute, lexically normalised form of `path` (`.` and `..` folded).
    static func absolute(_ path: String) -> String {
        let full = path.hasPrefix("/") ? path : join(TextFile.currentDirectory(), path)
        var parts: [Substring] = []
        for part in full.split(separator: "/") {
            if part == "." { continue }
            if part == ".." {
                _ = parts.popLast()
                continue
            }
            parts.append(part)
        }
        return "/" + parts.joined(separator: "/")
    }
}

extension TextFile {
    /// The names in directory `path`, without `.` and `..`, unsorted.
    static func listDirectory(_ path: String) throws(ReadError) -> [String] {
        guard let dir = opendir(path) else { throw ReadError(reason: String(cString: strerror(errno))) }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }
}

extension TextFile {
    /// Why a path is not a usable directory.
    enum DirectoryProblem: Equatable {
        case missing
        case notADirectory
        case unreachable(String)
    }

    /// Nil if `path` is a directory (following symlinks); otherwise why it is not.
    static func directoryProblem(_ path: String) -> DirectoryProblem? {
        var info = stat()
        guard stat(path, &info) == 0 else {
            return errno == ENOENT ? .missing : .unreachable(String(cString: strerror(errno)))
        }
        return (info.st_mode & S_IFMT) == S_IFDIR ? nil : .notADirectory
    }
}
