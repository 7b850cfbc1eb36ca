/// Standard base64 (RFC 4648) decoding, for pins.
enum Base64Text {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")

    static func decode(_ text: String) -> [UInt8]? {
        let trimmed = text.hasSuffix("==") ? text.dropLast(2) : text.hasSuffix("=") ? text.dropLast(1) : Substring(text)
        guard text.count % 4 == 0 else { return nil }
        var values: [UInt8] = []
        for ch in trimmed {
            guard let index = alphabet.firstIndex(of: ch) else { return nil }
            values.append(UInt8(index))
        }
        var out: [UInt8] = []
        var i = 0
        while i + 1 < values.count {
            out.append(values[i] << 2 | values[i + 1] >> 4)
            if i + 2 < values.count { out.append((values[i + 1] & 0xf) << 4 | values[i + 2] >> 2) }
            if i + 3 < values.count { out.append((values[i + 2] & 0x3) << 6 | values[i + 3]) }
            i += 4
        }
        return out
    }
}
