import NIOCore
import NIOEmbedded
import Testing

@testable import TLSGateRelay

/// The http-host sniffing handler with the relay's machine behind it, as `RelayConnection`
/// wires them: bytes pass on untouched, the machine sees them until it has decided.
@Suite struct HostSniffHandlerTests {
    final class Driver {
        var machine = RelayStateMachine(configuration: .init(sniffsHost: true, allowedNames: ["www.example.com"]))
        var actions: [RelayStateMachine.Action] = []
        var shown = 0

        init() {
            _ = machine.accepted(slot: true)
            _ = machine.destinationChecked(.allow)
        }

        func handler() -> HostSniffHandler {
            HostSniffHandler(
                onBytes: { bytes in
                    self.shown += bytes.count
                    self.actions += self.machine.hostBytes(bytes)
                    return self.machine.sniffing
                },
                onInputClosed: { self.actions += self.machine.hostInputClosed() })
        }
    }

    @Test(arguments: [1, 4, 1000])
    func theHeadIsShownUntilDecidedAndPassedOn(chunk: Int) throws {
        let driver = Driver()
        let channel = EmbeddedChannel(handler: driver.handler())
        let request = Array("GET / HTTP/1.1\r\nHost: www.example.com\r\n\r\n".utf8)
        var offset = 0
        while offset < request.count {
            let end = min(offset + chunk, request.count)
            try channel.writeInbound(ByteBuffer(bytes: request[offset..<end]))
            offset = end
        }
        try channel.writeInbound(ByteBuffer(string: "body"))
        var passed: [UInt8] = []
        while let buffer = try channel.readInbound(as: ByteBuffer.self) { passed += buffer.readableBytesView }
        #expect(passed == request + Array("body".utf8))
        #expect(driver.shown == request.count)
        #expect(driver.actions.last == .connect(requestedHost: "www.example.com", timeout: .seconds(5)))
        // Decided: a close now is the relay's business, not the sniffer's.
        channel.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        #expect(driver.machine.reason == nil)
        _ = try channel.finish()
    }

    @Test func aCloseBeforeTheWholeHeadIsReportedOnce() throws {
        let driver = Driver()
        let channel = EmbeddedChannel(handler: driver.handler())
        try channel.writeInbound(ByteBuffer(string: "GET / HTTP/1.1\r\n"))
        channel.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        channel.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        #expect(driver.machine.reason == .badRequest)
        #expect(driver.actions.filter { if case .answerClient = $0 { return true } else { return false } }.count == 1)
        _ = try channel.finish()
    }
}
