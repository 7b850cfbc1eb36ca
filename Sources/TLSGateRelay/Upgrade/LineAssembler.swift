/// Splits a server's bytes into lines (LF-terminated, a CR before it dropped) with a
/// bound on the line length, so a server that never ends a line cannot make us buffer.
struct LineAssembler: Sendable {
    enum Next: Equatable {
        case line([UInt8])
        case none
        case tooLong
    }

    let maxLine: Int
    private var buffer: [UInt8] = []

    init(maxLine: Int) {
        self.maxLine = maxLine
    }

    /// Bytes received but not yet returned as a line.
    var pending: Int { buffer.count }

    mutating func append(_ bytes: [UInt8]) {
        buffer.append(contentsOf: bytes)
    }

    mutating func next() -> Next {
        guard let end = buffer.firstIndex(of: 0x0a) else {
            return buffer.count > maxLine ? .tooLong : .none
        }
        guard end <= maxLine else { return .tooLong }
        var line = Array(buffer[..<end])
        buffer.removeSubrange(...end)
        if line.last == 0x0d { line.removeLast() }
        return .line(line)
    }
}

extension Array where Element == UInt8 {
    /// Whether these bytes start with `prefix`, ASCII letters compared without case.
    func hasPrefixIgnoringCase(_ prefix: String) -> Bool {
        let p = Array(prefix.utf8)
        guard count >= p.count else { return false }
        for (a, b) in zip(self, p) where Self.lower(a) != Self.lower(b) { return false }
        return true
    }

    static func lower(_ byte: UInt8) -> UInt8 { (0x41...0x5a).contains(byte) ? byte + 0x20 : byte }
}
