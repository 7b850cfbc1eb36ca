import NIOCore
import Testing

@testable import TLSGateTLS

@Suite struct SecretBytesTests {
    @Test func arrayIsOverwrittenInPlace() {
        var secret: [UInt8] = Array("s3cret-pw\u{0}".utf8)
        let before = secret.withUnsafeBytes { UInt(bitPattern: $0.baseAddress) }
        SecretBytes.wipe(&secret)
        #expect(secret == [UInt8](repeating: 0, count: 10))
        #expect(secret.withUnsafeBytes { UInt(bitPattern: $0.baseAddress) } == before)  // no copy made
    }

    @Test func bufferReadableBytesAreOverwritten() {
        var buffer = ByteBufferAllocator().buffer(capacity: 32)
        buffer.writeBytes([0xaa, 0xbb])
        buffer.moveReaderIndex(forwardBy: 1)
        buffer.writeBytes(Array("pw".utf8))
        SecretBytes.wipe(&buffer)
        #expect(Array(buffer.readableBytesView) == [0, 0, 0])
        buffer.moveReaderIndex(to: 0)
        #expect(Array(buffer.readableBytesView) == [0xaa, 0, 0, 0])  // only the readable bytes
    }
}
