import Testing

@testable import TLSGateRelay

/// Drives a machine through a script of server answers, fed all at once and byte by byte;
/// both must give the same actions.
private func run<M: UpgradeStateMachine>(_ make: () -> M, _ answers: [String], byteByByte: Bool) -> [UpgradeAction] {
    var machine = make()
    var actions = [machine.start()]
    for answer in answers {
        let bytes = Array(answer.utf8)
        if byteByByte {
            var last = UpgradeAction.needMore
            for (index, byte) in bytes.enumerated() {
                last = machine.receive([byte])
                if case .refuse = last { break }
                if last != .needMore && index < bytes.count - 1 {
                    // An action before the end: the rest is what follows it.
                    actions.append(last)
                    last = machine.receive(Array(bytes[(index + 1)...]))
                    break
                }
            }
            actions.append(last)
        } else {
            actions.append(machine.receive(bytes))
        }
        if case .refuse = actions.last! { break }
    }
    return actions
}

private func both<M: UpgradeStateMachine>(_ make: () -> M, _ answers: [String]) -> [UpgradeAction] {
    let whole = run(make, answers, byteByByte: false)
    let bytes = run(make, answers, byteByByte: true)
    #expect(whole == bytes, "all at once and byte by byte differ")
    return whole
}

private func send(_ text: String) -> UpgradeAction { .send(Array(text.utf8)) }

private func refusal(_ actions: [UpgradeAction]) -> String? {
    if case .refuse(let why) = actions.last { return why }
    return nil
}

@Suite struct SMTPUpgradeTests {
    let make = { SMTPUpgrade(ehloName: "[198.19.0.1]") }
    let greeting = "220 mx.example ESMTP Postfix\r\n"
    let ehlo = "250-mx.example\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-STARTTLS\r\n250 8BITMIME\r\n"

    @Test func fullExchange() {
        #expect(both(make, [greeting, ehlo, "220 2.0.0 Ready to start TLS\r\n"]) == [
            .needMore, send("EHLO [198.19.0.1]\r\n"), send("STARTTLS\r\n"), .startTLS,
        ])
        var machine = make()
        _ = machine.receive(Array(greeting.utf8))
        _ = machine.receive(Array(ehlo.utf8))
        _ = machine.receive(Array("220 go\r\n".utf8))
        #expect(machine.transcript == [
            "S: 220 mx.example ESMTP Postfix", "C: EHLO [198.19.0.1]", "S: 250-mx.example (+4 lines)", "C: STARTTLS",
            "S: 220 go",
        ])
    }

    @Test func multiLineGreetingAndBareLF() {
        #expect(both(make, ["220-mx.example hello\n220-more\n220 end\n", "250-x\n250 starttls\n", "220\n"]) == [
            .needMore, send("EHLO [198.19.0.1]\r\n"), send("STARTTLS\r\n"), .startTLS,
        ])
    }

    @Test func noStartTLSOffered() {
        let actions = both(make, [greeting, "250-mx.example\r\n250-STARTTLSX\r\n250 SIZE\r\n"])
        #expect(refusal(actions) == "the server does not offer STARTTLS in its EHLO reply")
    }

    @Test func refusals() {
        #expect(refusal(both(make, ["554 5.7.1 go away\r\n"])) == "the server's greeting is not 220: \"554 5.7.1 go away\"")
        #expect(refusal(both(make, [greeting, "502 no\r\n"])) == "the server refused EHLO: \"502 no\"")
        #expect(refusal(both(make, [greeting, ehlo, "454 4.7.0 TLS not available\r\n"]))
            == "the server refused STARTTLS: \"454 4.7.0 TLS not available\"")
    }

    @Test func malformed() {
        #expect(refusal(both(make, ["hello\r\n"])) == "the server's reply line is not an SMTP reply: \"hello\"")
        #expect(refusal(both(make, ["22\r\n"])) == "the server's reply line is not an SMTP reply: \"22\"")
        #expect(refusal(both(make, ["220_x\r\n"])) == "the server's reply line is not an SMTP reply: \"220_x\"")
        #expect(refusal(both(make, ["220-a\r\n250 b\r\n"])) == "the server's multi-line reply changes its code: \"250 b\"")
        #expect(refusal(both(make, ["220 \u{1}\u{7f}\r\n", "500 \u{0}\r\n"])) == "the server refused EHLO: \"500 ?\"")
    }

    @Test func unaskedBytesAfterAReplyAreRefused() {
        // The classic STARTTLS injection: data after 220 that would be taken as TLS input.
        let whole = run(make, [greeting, ehlo, "220 go\r\nXYZ"], byteByByte: false)
        #expect(refusal(whole) == "the server sent more than its reply, unasked (3 bytes), before TLS")
        var machine = make()
        _ = machine.receive(Array(greeting.utf8))
        _ = machine.receive(Array(ehlo.utf8))
        #expect(machine.receive(Array("220 go\r\n".utf8)) == .startTLS)
        #expect(machine.receive([0x16]) == .refuse("the server sent data after its STARTTLS answer, before the TLS handshake"))
        #expect(refusal(run(make, [greeting + "250 early\r\n"], byteByByte: false))
            == "the server sent more than its reply, unasked (11 bytes), before TLS")
    }

    @Test func oversizedAndTruncated() {
        let long = "220 " + String(repeating: "a", count: 2000)
        #expect(refusal(both(make, [long])) == "the server sent a reply line longer than 1024 bytes")
        let many = String(repeating: "250-x\r\n", count: 65) + "250 STARTTLS\r\n"
        #expect(refusal(both(make, [greeting, many])) == "the server's reply has more than 64 lines")
        let huge = String(repeating: "250-" + String(repeating: "y", count: 900) + "\r\n", count: 20)
        #expect(refusal(run(make, [greeting, huge], byteByByte: false)) == "the server's reply is larger than 16384 bytes")
        // Truncated: half a reply is just "wait" (the connection's timeout ends it).
        #expect(both(make, ["220 mx"]) == [.needMore, .needMore])
        #expect(both(make, [greeting, "250-mx\r\n250-STARTTLS\r\n"]) == [.needMore, send("EHLO [198.19.0.1]\r\n"), .needMore])
    }

    @Test func afterARefusalEverythingIsRefused() {
        var machine = make()
        _ = machine.receive(Array("nope\r\n".utf8))
        #expect(machine.receive(Array(greeting.utf8)) == .refuse("the exchange already failed"))
    }
}

@Suite struct IMAPUpgradeTests {
    let make = { IMAPUpgrade() }
    let greeting = "* OK [CAPABILITY IMAP4rev1 STARTTLS] Dovecot ready.\r\n"
    let caps = "* CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID STARTTLS LOGINDISABLED\r\nT1 OK Pre-login capabilities listed.\r\n"

    @Test func fullExchange() {
        #expect(both(make, [greeting, caps, "T2 OK Begin TLS negotiation now.\r\n"]) == [
            .needMore, send("T1 CAPABILITY\r\n"), send("T2 STARTTLS\r\n"), .startTLS,
        ])
        #expect(both(make, ["* ok hi\r\n", "* capability imap4rev1 starttls\r\n* OK noise\r\nt1 ok\r\n", "t2 OK\r\n"]).last == .startTLS)
    }

    @Test func refusals() {
        #expect(refusal(both(make, ["* PREAUTH logged in as joe\r\n"]))
            == "the server's greeting is PREAUTH (already authenticated): it cannot be upgraded to TLS")
        #expect(refusal(both(make, ["* BYE busy\r\n"])) == "the server said BYE: \"* BYE busy\"")
        #expect(refusal(both(make, [greeting, "* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\nT1 OK\r\n"]))
            == "the server does not offer STARTTLS in its CAPABILITY")
        #expect(refusal(both(make, [greeting, caps, "T2 BAD no\r\n"])) == "the server refused STARTTLS: \"T2 BAD no\"")
        #expect(refusal(both(make, [greeting, "T1 NO\r\n"])) == "the server refused CAPABILITY: \"T1 NO\"")
    }

    @Test func malformed() {
        #expect(refusal(both(make, ["+OK pop3?\r\n"])) == "the server's greeting is not \"* OK\": \"+OK pop3?\"")
        #expect(refusal(both(make, ["* OKAY\r\n"])) == "the server's greeting is not \"* OK\": \"* OKAY\"")
        #expect(refusal(both(make, [greeting, "X9 OK\r\n"])) == "the server's answer is not an IMAP response to T1: \"X9 OK\"")
        #expect(refusal(both(make, [greeting, "+ go ahead\r\n"])) == "the server's answer is not an IMAP response to T1: \"+ go ahead\"")
        #expect(refusal(run(make, [greeting, caps, "T2 OK\r\n\u{16}\u{3}"], byteByByte: false))
            == "the server sent more than its answer, unasked (2 bytes), before TLS")
    }

    @Test func oversizedAndTruncated() {
        #expect(refusal(both(make, ["* OK " + String(repeating: "x", count: 9000)])) == "the server sent a line longer than 8192 bytes")
        let many = String(repeating: "* X\r\n", count: 65)
        #expect(refusal(both(make, [greeting, many])) == "the server sent more than 64 untagged lines")
        let big = String(repeating: "* " + String(repeating: "z", count: 8000) + "\r\n", count: 5)
        #expect(refusal(run(make, [greeting, big], byteByByte: false)) == "the server's answer is larger than 32768 bytes")
        #expect(both(make, [greeting, "* CAPABILITY STARTTLS\r\n"]) == [.needMore, send("T1 CAPABILITY\r\n"), .needMore])
    }
}

@Suite struct POP3UpgradeTests {
    let make = { POP3Upgrade() }

    @Test func fullExchange() {
        #expect(both(make, ["+OK Dovecot ready. <1.2@host>\r\n", "+OK Begin TLS negotiation now.\r\n"]) == [
            .needMore, send("STLS\r\n"), .startTLS,
        ])
        #expect(both(make, ["+OK\n", "+ok\n"]).last == .startTLS)
    }

    @Test func refusals() {
        #expect(refusal(both(make, ["+OK hi\r\n", "-ERR Unknown command.\r\n"]))
            == "the server does not offer STLS: \"-ERR Unknown command.\"")
        #expect(refusal(both(make, ["-ERR go away\r\n"])) == "the server refused the connection: \"-ERR go away\"")
    }

    @Test func malformedOversizedTruncated() {
        #expect(refusal(both(make, ["* OK imap?\r\n"])) == "the server's greeting is not \"+OK\": \"* OK imap?\"")
        #expect(refusal(both(make, ["+OKAY\r\n"])) == "the server's greeting is not \"+OK\": \"+OKAY\"")
        #expect(refusal(both(make, ["+OK hi\r\n", "+OKgo\r\n"])) == "the server's answer to STLS is not \"+OK\": \"+OKgo\"")
        #expect(refusal(both(make, ["+OK " + String(repeating: "x", count: 1100)])) == "the server sent a line longer than 1024 bytes")
        #expect(refusal(run(make, ["+OK hi\r\n+OK\r\n"], byteByByte: false)) == "the server sent more than its answer, unasked (5 bytes), before TLS")
        #expect(both(make, ["+OK hi\r\n", "+O"]) == [.needMore, send("STLS\r\n"), .needMore])
    }
}

@Suite struct StartTLSWordsTests {
    @Test func greetingsAndRefusalsSpeakTheProtocol() {
        #expect(String(decoding: StartTLSUpgrade.clientGreeting(.smtp, server: "mail.example")!, as: UTF8.self)
            == "220 mail.example ESMTP ready (tlsgate: TLS to the server verified)\r\n")
        #expect(String(decoding: StartTLSUpgrade.clientGreeting(.imap, server: "m")!, as: UTF8.self).hasPrefix("* OK "))
        #expect(String(decoding: StartTLSUpgrade.clientGreeting(.pop3, server: "m")!, as: UTF8.self).hasPrefix("+OK "))
        #expect(String(decoding: StartTLSUpgrade.clientRefusal(.smtp, policy: "mx", reason: "starttls_refused", detail: "no\r\nQUIT"), as: UTF8.self)
            == "421 4.7.0 tlsgate: policy mx: starttls_refused: no??QUIT\r\n")
        #expect(String(decoding: StartTLSUpgrade.clientRefusal(.imap, policy: "p", reason: "r", detail: "d"), as: UTF8.self)
            == "* BYE tlsgate: policy p: r: d\r\n")
        #expect(String(decoding: StartTLSUpgrade.clientRefusal(.pop3, policy: "p", reason: "r", detail: "d"), as: UTF8.self)
            == "-ERR tlsgate: policy p: r: d\r\n")
        let long = StartTLSUpgrade.clientRefusal(.pop3, policy: "p", reason: "r", detail: String(repeating: "x", count: 5000))
        #expect(long.count < 420)
    }
}

@Suite struct LDAPUpgradeTests {
    let make = { LDAPUpgrade() }

    /// Byte-exact feeding (the helpers above take Strings; BER is not UTF-8).
    static func feed(_ chunks: [[UInt8]], byteByByte: Bool) -> [UpgradeAction] {
        var machine = LDAPUpgrade()
        var actions = [machine.start()]
        for chunk in chunks {
            if byteByByte {
                var last = UpgradeAction.needMore
                for byte in chunk {
                    last = machine.receive([byte])
                    if case .refuse = last { break }
                }
                actions.append(last)
            } else {
                actions.append(machine.receive(chunk))
            }
            if case .refuse = actions.last! { break }
        }
        return actions
    }

    static func both(_ chunks: [[UInt8]]) -> [UpgradeAction] {
        let whole = feed(chunks, byteByByte: false)
        #expect(whole == feed(chunks, byteByByte: true))
        return whole
    }

    static func reply(id: [UInt8] = [0x7f, 0xff, 0xff, 0xff], code: UInt8 = 0, diag: String = "", extra: [UInt8] = []) -> [UInt8] {
        let fields = BER.encode(0x0a, [code]) + BER.encode(0x04, []) + BER.encode(0x04, Array(diag.utf8)) + extra
        return BER.encode(0x30, BER.encode(0x02, id) + BER.encode(0x78, fields))
    }

    @Test func requestIsTheStartTLSExtendedOperation() {
        var machine = make()
        let expected: [UInt8] = [0x30, 0x20, 0x02, 0x04, 0x7f, 0xff, 0xff, 0xff, 0x77, 0x18, 0x80, 0x16] + Array("1.3.6.1.4.1.1466.20037".utf8)
        #expect(machine.start() == .send(expected))
    }

    @Test func success() {
        #expect(Self.both([Self.reply()]) == [.send(LDAPUpgrade.request), .startTLS])
        // With a responseName, as OpenLDAP sends it.
        let named = Self.reply(extra: BER.encode(0x8a, Array("1.3.6.1.4.1.1466.20037".utf8)))
        #expect(Self.both([named]).last == .startTLS)
    }

    @Test func refusals() {
        #expect(Self.both([Self.reply(code: 2, diag: "unsupported extended operation")]).last
            == .refuse("the server refused StartTLS: resultCode 2 (protocolError) \"unsupported extended operation\""))
        #expect(Self.both([Self.reply(code: 52, diag: "Could not initialize TLS")]).last
            == .refuse("the server refused StartTLS: resultCode 52 (unavailable) \"Could not initialize TLS\""))
        let notice = Self.reply(id: [0], code: 52, diag: "bye", extra: BER.encode(0x8a, Array("1.3.6.1.4.1.1466.20036".utf8)))
        #expect(Self.both([notice]).last == .refuse("the server sent a notice of disconnection: resultCode 52 \"bye\""))
        #expect(Self.both([Self.reply(id: [5])]).last == .refuse("the server answered message ID 5, not 2147483647"))
    }

    @Test func malformed() {
        #expect(Self.both([[0x31, 0x00]]).last == .refuse("the server's answer is not an LDAPMessage (tag 0x31)"))
        #expect(Self.both([[0x30, 0x80, 0x00, 0x00]]).last == .refuse("the server's answer is malformed BER: indefinite length"))
        #expect(Self.both([[0x30, 0x85, 1, 1, 1, 1, 1]]).last == .refuse("the server's answer is malformed BER: a length of 5 bytes"))
        #expect(Self.both([[0x30, 0x03, 0x04, 0x01, 0x00]]).last == .refuse("the server's answer has no messageID"))
        #expect(Self.both([[0x30, 0x05, 0x02, 0x01, 0x01, 0x61, 0x00]]).last
            == .refuse("the server's answer is not an ExtendedResponse (tag 0x61)"))
        #expect(Self.both([[0x30, 0x03, 0x02, 0x01, 0xff]]).last == .refuse("the server's answer is malformed BER: a negative integer"))
        // An inner length that runs past its container.
        #expect(Self.both([[0x30, 0x04, 0x02, 0x05, 0x01, 0x02]]).last == .refuse("the server's answer is malformed BER: an element runs past the end of its message"))
        // Unasked bytes after the answer (they would be taken as TLS input).
        #expect(Self.feed([Self.reply() + [0x16]], byteByByte: false).last
            == .refuse("the server sent more than its answer, unasked (1 bytes), before TLS"))
    }

    @Test func oversizedAndTruncated() {
        #expect(Self.both([[0x30, 0x83, 0x01, 0x00, 0x00]]).last
            == .refuse("the server's answer is malformed BER: an element of 65536 bytes (limit 16384)"))
        #expect(Self.both([Array(Self.reply().dropLast(3))]) == [.send(LDAPUpgrade.request), .needMore])
        #expect(Self.both([[0x30]]) == [.send(LDAPUpgrade.request), .needMore])
    }

    @Test func noticeForTheClientIsWellFormed() throws {
        let notice = LDAPUpgrade.noticeOfDisconnection(String(repeating: "x", count: 300))
        let outer = try BER.read(notice, at: 0, limit: 1000)
        #expect(outer.tag == 0x30 && outer.end == notice.count)
        var machine = LDAPUpgrade()
        _ = machine.start()
        #expect(machine.receive(notice) == .refuse("the server sent a notice of disconnection: resultCode 52 \"" + String(repeating: "x", count: 160) + "…\""))
    }
}

@Suite struct PostgresUpgradeTests {
    @Test func sslRequestThenS() {
        var machine = PostgresUpgrade()
        #expect(machine.start() == .send([0, 0, 0, 8, 4, 210, 22, 47]))
        #expect(machine.receive([]) == .needMore)
        #expect(machine.receive(Array("S".utf8)) == .startTLS)
        #expect(machine.receive([0x16]) == .refuse("the server sent data after its SSLRequest answer, before the TLS handshake"))
    }

    @Test func refusalsAndMalformed() {
        func answer(_ bytes: [UInt8]) -> UpgradeAction {
            var machine = PostgresUpgrade()
            _ = machine.start()
            return machine.receive(bytes)
        }
        #expect(answer(Array("N".utf8)) == .refuse("the server does not accept TLS (it answered SSLRequest with N)"))
        #expect(answer(Array("S".utf8) + [0x16, 3]) == .refuse("the server sent more than its answer, unasked (2 bytes), before TLS"))
        #expect(answer([0x48]) == .refuse("the server's answer to SSLRequest is not S or N (0x48)"))
        let error = PostgresUpgrade.errorResponse("no")
        if case .refuse(let why) = answer(error) { #expect(why.hasPrefix("the server answered SSLRequest with an error")) } else { Issue.record("no refusal") }
    }

    @Test func errorResponseIsWellFormed() {
        let e = PostgresUpgrade.errorResponse("tlsgate: policy p: r: d")
        #expect(e.first == UInt8(ascii: "E"))
        let length = Int(e[1]) << 24 | Int(e[2]) << 16 | Int(e[3]) << 8 | Int(e[4])
        #expect(length == e.count - 1)
        #expect(e.last == 0)
        #expect(String(decoding: e, as: UTF8.self).contains("M" + "tlsgate: policy p: r: d"))
    }
}

@Suite struct PostgresClientPreambleTests {
    let startup: [UInt8] = [0, 0, 0, 9, 0, 3, 0, 0, 0]

    @Test func sslRequestAnsweredNThenStartupPassed() {
        for byteByByte in [false, true] {
            var p = PostgresClientPreamble()
            var actions: [PostgresClientPreamble.Action] = []
            let input = [PostgresUpgrade.sslRequest, startup]
            for chunk in input {
                if byteByByte {
                    for byte in chunk {
                        let a = p.receive([byte])
                        if a != .needMore { actions.append(a) }
                    }
                } else {
                    actions.append(p.receive(chunk))
                }
            }
            let passed = actions.compactMap { if case .pass(let b) = $0 { return b } else { return nil } }.flatMap { $0 }
            #expect(actions.first == .answer(Array("N".utf8)))
            #expect(passed == startup, "byteByByte \(byteByByte)")
        }
    }

    @Test func gssThenSSLThenStartup() {
        var p = PostgresClientPreamble()
        #expect(p.receive(PostgresUpgrade.gssEncRequest) == .answer(Array("N".utf8)))
        #expect(p.receive(PostgresUpgrade.sslRequest) == .answer(Array("N".utf8)))
        // A third request is not answered again: it goes on to the server like any bytes.
        #expect(p.receive(PostgresUpgrade.sslRequest) == .pass(PostgresUpgrade.sslRequest))
    }

    @Test func plainStartupPassesAtOnceAndUnaskedBytesAreKept() {
        var p = PostgresClientPreamble()
        #expect(p.receive(startup) == .pass(startup))
        #expect(p.receive([1, 2]) == .pass([1, 2]))
        var q = PostgresClientPreamble()
        #expect(q.receive(PostgresUpgrade.sslRequest + [7]) == .pass([7]))
        var r = PostgresClientPreamble()
        #expect(r.receive([0, 0]) == .needMore)
    }
}
