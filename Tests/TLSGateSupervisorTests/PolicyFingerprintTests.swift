import Foundation
import Testing

@testable import TLSGateSupervisor

@Suite struct PolicyFingerprintTests {
    @Test func sha256KnownAnswers() {
        #expect(SHA256.hex(Array("".utf8)) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(SHA256.hex(Array("abc".utf8)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(
            SHA256.hex(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8))
                == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        #expect(
            SHA256.hex([UInt8](repeating: UInt8(ascii: "a"), count: 1_000_000))
                == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }

    @Test func fileContentChangesTheDigest() throws {
        let path = NSTemporaryDirectory() + "tlsgate-fp-\(getpid()).pem"
        defer { unlink(path) }
        try Data("one".utf8).write(to: URL(fileURLWithPath: path))
        let first = PolicyFingerprint.contentDigest(path)
        try Data("two".utf8).write(to: URL(fileURLWithPath: path))
        let second = PolicyFingerprint.contentDigest(path)
        #expect(first != second)
        #expect(second == SHA256.hex(Array("two".utf8)))
        #expect(PolicyFingerprint.contentDigest(path + ".missing").hasPrefix("unreadable:"))
    }

    @Test func aFIFOIsNotReadAndDoesNotHang() {
        let path = NSTemporaryDirectory() + "tlsgate-fp-\(getpid()).fifo"
        unlink(path)
        #expect(mkfifo(path, 0o600) == 0)
        defer { unlink(path) }
        #expect(PolicyFingerprint.contentDigest(path) == "not-a-regular-file")
    }
}
