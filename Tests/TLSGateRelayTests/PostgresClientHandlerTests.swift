import NIOCore
import NIOEmbedded
import Testing

@testable import TLSGateRelay

/// A refusal decided before the client's startup message (an upstream that failed at once,
/// `postgres-direct` without ALPN) waits for it: libpq reads the answer to its SSLRequest as
/// one byte and shows nothing of an error sent in its place.
@Suite struct PostgresClientHandlerTests {
    /// Whether a future has succeeded (set from its callback, all on the embedded loop).
    final class Succeeded: @unchecked Sendable {
        var value = false
        init(_ future: EventLoopFuture<Void>) { future.whenSuccess { self.value = true } }
    }

    static let startup: [UInt8] = [0, 0, 0, 9, 0, 3, 0, 0, 0]

    private func setUp() throws -> (EmbeddedChannel, PostgresClientHandler) {
        let channel = EmbeddedChannel()
        let handler = PostgresClientHandler()
        try channel.pipeline.syncOperations.addHandler(handler)
        return (channel, handler)
    }

    @Test func refusalBeforeTheSSLRequestWaitsForTheStartupMessage() throws {
        let (channel, handler) = try setUp()
        let written = channel.eventLoop.makePromise(of: Void.self)
        let succeeded = Succeeded(written.futureResult)
        handler.refuse(ByteBuffer(string: "E-refusal"), promise: written)
        #expect(try channel.readOutbound(as: ByteBuffer.self) == nil)  // nothing yet
        try channel.writeInbound(ByteBuffer(bytes: PostgresUpgrade.sslRequest))
        #expect(try channel.readOutbound(as: ByteBuffer.self) == ByteBuffer(string: "N"))
        #expect(try channel.readOutbound(as: ByteBuffer.self) == nil)
        try channel.writeInbound(ByteBuffer(bytes: Self.startup))
        #expect(try channel.readOutbound(as: ByteBuffer.self) == ByteBuffer(string: "E-refusal"))
        #expect(try channel.readInbound(as: ByteBuffer.self) == nil)  // the startup message goes nowhere
        #expect(succeeded.value)
    }

    @Test func refusalAfterTheStartupMessageGoesAtOnce() throws {
        let (channel, handler) = try setUp()
        try channel.writeInbound(ByteBuffer(bytes: Self.startup))
        #expect(try channel.readInbound(as: ByteBuffer.self) == ByteBuffer(bytes: Self.startup))
        let written = channel.eventLoop.makePromise(of: Void.self)
        let succeeded = Succeeded(written.futureResult)
        handler.refuse(ByteBuffer(string: "E-refusal"), promise: written)
        #expect(try channel.readOutbound(as: ByteBuffer.self) == ByteBuffer(string: "E-refusal"))
        #expect(succeeded.value)
    }

    @Test func aSilentClientGetsTheRefusalAfterTheWait() throws {
        let (channel, handler) = try setUp()
        let written = channel.eventLoop.makePromise(of: Void.self)
        let succeeded = Succeeded(written.futureResult)
        handler.refuse(ByteBuffer(string: "E-refusal"), promise: written)
        channel.embeddedEventLoop.advanceTime(by: PostgresClientHandler.refusalWait - .milliseconds(1))
        #expect(try channel.readOutbound(as: ByteBuffer.self) == nil)
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(1))
        #expect(try channel.readOutbound(as: ByteBuffer.self) == ByteBuffer(string: "E-refusal"))
        #expect(succeeded.value)
    }
}
