import Testing

@testable import TLSGateTLS

@Suite struct RSAKeyTests {
    static let key = try! RSAKey.generate(bits: 2048)

    @Test func aNewKeyPairRoundTripsThroughItsOwnPEM() throws {
        let key = Self.key
        #expect(key.bits == 2048 && key.size == 256)
        let pem = String(decoding: key.publicKeyPEM, as: UTF8.self)
        #expect(pem.hasPrefix("-----BEGIN PUBLIC KEY-----\n") && pem.hasSuffix("-----END PUBLIC KEY-----\n"))
        // What a client does: read the PEM, encrypt; the pair decrypts it.
        let client = try RSAKey(publicKeyPEM: key.publicKeyPEM)
        #expect(client.publicKeyPEM == key.publicKeyPEM && client.size == 256)
        let secret = Array("password\u{0}".utf8)
        let sealed = try client.encrypt(secret)
        let again = try client.encrypt(secret)
        #expect(sealed.count == 256 && sealed != again)  // OAEP is randomised
        #expect(try key.decrypt(sealed) == secret)
        // OAEP with SHA-1 leaves 256 - 42 bytes of room.
        #expect(try client.encrypt([UInt8](repeating: 1, count: 214)).count == 256)
        #expect(throws: RSAKeyError.self) { try client.encrypt([UInt8](repeating: 1, count: 215)) }
    }

    @Test func decryptionFailuresAreOneErrorWithoutDetail() throws {
        let other = try RSAKey.generate(bits: 2048)
        let sealed = try other.encrypt(Array("x\u{0}".utf8))
        #expect(throws: RSAKeyError.self) { try Self.key.decrypt(sealed) }
        do {
            _ = try Self.key.decrypt(sealed)
        } catch {
            #expect(error.description == "decrypting failed (not encrypted with this key, or damaged)")
        }
        var damaged = try Self.key.encrypt([1, 2, 3])
        damaged[100] ^= 1
        #expect(throws: RSAKeyError.self) { try Self.key.decrypt(damaged) }
        #expect(throws: RSAKeyError.self) { try Self.key.decrypt(Array(sealed.prefix(255))) }
        // A public key alone cannot decrypt.
        let publicOnly = try RSAKey(publicKeyPEM: Self.key.publicKeyPEM)
        let sealedForIt = try publicOnly.encrypt([1])
        #expect(throws: RSAKeyError.self) { try publicOnly.decrypt(sealedForIt) }
    }

    @Test func badInputIsAnErrorNeverACrash() {
        #expect(throws: RSAKeyError.self) { try RSAKey.generate(bits: 1024) }
        #expect(throws: RSAKeyError.self) { try RSAKey(publicKeyPEM: []) }
        #expect(throws: RSAKeyError.self) { try RSAKey(publicKeyPEM: Array("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n".utf8)) }
        var truncated = Self.key.publicKeyPEM
        truncated.removeLast(40)
        #expect(throws: RSAKeyError.self) { try RSAKey(publicKeyPEM: truncated) }
    }
}
