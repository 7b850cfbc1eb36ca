import Testing

@testable import TLSGatePolicy

@Suite struct TOMLReaderTests {
    private func read(_ text: String) -> TOMLReader.Result { TOMLReader.read(text) }

    private func errors(_ text: String) -> [String] { read(text).errors.map(\.description) }

    @Test func readsTablesKeysAndLines() throws {
        let result = read(
            """
            # comment
            top = 'literal \\n kept'

            [match]   # trailing comment
            port = 80
            "quoted key" = true
            [a.b]
            c = -1_000
            """)
        #expect(result.errors == [])
        let root = result.table
        #expect(root.value("top") == TOMLValue(.string("literal \\n kept"), line: 2))
        let match = try #require(root.table("match"))
        #expect(match.line == 4)
        #expect(match.value("port") == TOMLValue(.integer(80), line: 5))
        #expect(match["port"]?.line == 5)
        #expect(match.value("quoted key")?.booleanValue == true)
        let b = try #require(root.table("a")?.table("b"))
        #expect(b.line == 7)
        #expect(b.value("c")?.integerValue == -1000)
        #expect(root.entries.map(\.key) == ["top", "match", "a"])
    }

    @Test func basicStringEscapes() {
        let result = read(#"s = "q\" b\\ n\n t\t u\u00e9 U\U0001F600""#)
        #expect(result.errors == [])
        #expect(result.table.value("s")?.stringValue == "q\" b\\ n\n t\t u\u{e9} U\u{1F600}")
    }

    @Test func multiLineArrayWithCommentsAndTrailingComma() {
        let result = read(
            """
            a = [
              "one",   # first
              # a comment line
              'two',
              3,
            ]
            b = []
            c = [ [1, 2], [true] ]
            """)
        #expect(result.errors == [])
        let a = result.table.value("a")
        #expect(a?.line == 1)
        #expect(a?.arrayValue?.map(\.line) == [2, 4, 5])
        #expect(a?.arrayValue?.map(\.typeDescription) == ["a string", "a string", "an integer"])
        #expect(result.table.value("b")?.arrayValue == [])
        #expect(result.table.value("c")?.arrayValue?.count == 2)
    }

    @Test func crlfLineEndingsCountLines() {
        let result = read("a = 1\r\nb = 2\r\n")
        #expect(result.errors == [])
        #expect(result.table["b"]?.line == 2)
    }

    @Test func unterminatedStrings() {
        #expect(errors("a = \"open\nb = 1") == ["1: unterminated string (missing closing \")"])
        #expect(errors("a = 'open") == ["1: unterminated string (missing closing ')"])
    }

    @Test func duplicateKeyAndTable() {
        #expect(errors("[t]\nk = 1\nk = 2") == ["3: duplicate key \"k\" (first set on line 2)"])
        #expect(errors("[t]\n[u]\n[t]\nk = 1") == ["3: duplicate table [t] (first defined on line 1)"])
        // A table implied by [a.b] may be defined once later.
        #expect(errors("[a.b]\n[a]\nx = 1") == [])
        #expect(errors("a = 1\n[a]") == ["2: [a] conflicts with key \"a\" set on line 1"])
    }

    @Test func missingEqualsAndValue() {
        #expect(errors("port 80") == ["1: missing \"=\" after key \"port\""])
        #expect(errors("port =\n") == ["1: missing value after \"=\""])
        #expect(errors("= 3") == ["1: missing key before \"=\""])
    }

    @Test func unsupportedFormsSayWhat() {
        #expect(errors("a = 1.5") == ["1: floats are not supported here"])
        #expect(errors("a = 1e3") == ["1: floats are not supported here"])
        #expect(errors("a = inf") == ["1: floats are not supported here"])
        #expect(errors("a = 1979-05-27") == ["1: dates and times are not supported here"])
        #expect(errors("a = 07:32:00") == ["1: dates and times are not supported here"])
        #expect(errors("a = { b = 1 }") == ["1: inline tables are not supported here; use a [table] header"])
        #expect(errors("[[a]]") == ["1: arrays of tables ([[...]]) are not supported here"])
        #expect(errors("a = \"\"\"x\"\"\"") == ["1: multi-line strings are not supported here"])
        #expect(errors("a.b = 1") == ["1: dotted keys are not supported here; use a [table] header"])
        #expect(errors("a = api.example.com") == ["1: bad value \"api.example.com\": strings must be in quotes"])
    }

    @Test func hexOctalAndBinaryIntegers() {
        #expect(read("a = 0x1F").table.value("a")?.integerValue == 31)
        #expect(read("a = 0xdead_BEEF").table.value("a")?.integerValue == 0xdead_beef)
        #expect(read("a = 0x00ff").table.value("a")?.integerValue == 255)
        #expect(read("a = 0x7fffffffffffffff").table.value("a")?.integerValue == Int64.max)
        #expect(read("a = 0o755").table.value("a")?.integerValue == 0o755)
        #expect(read("a = 0b1010_0101").table.value("a")?.integerValue == 0xa5)
        #expect(read("a = [0x1, 0o1, 0b1]").table.value("a")?.arrayValue?.compactMap(\.integerValue) == [1, 1, 1])
        #expect(errors("a = 0x") == ["1: bad value \"0x\": not a hexadecimal integer"])
        #expect(errors("a = 0xG") == ["1: bad value \"0xG\": not a hexadecimal integer"])
        #expect(errors("a = 0x_1") == ["1: bad value \"0x_1\": not a hexadecimal integer"])
        #expect(errors("a = 0x1__0") == ["1: bad value \"0x1__0\": not a hexadecimal integer"])
        #expect(errors("a = 0o8") == ["1: bad value \"0o8\": not an octal integer"])
        #expect(errors("a = 0b102") == ["1: bad value \"0b102\": not a binary integer"])
        #expect(errors("a = -0x1") == ["1: bad value \"-0x1\": hexadecimal integers cannot have a sign"])
        #expect(errors("a = +0b1") == ["1: bad value \"+0b1\": binary integers cannot have a sign"])
        #expect(errors("a = 0x8000000000000000") == ["1: integer 0x8000000000000000 is too large"])
    }

    @Test func badIntegersAndStrings() {
        #expect(errors("a = 1__0") == ["1: bad value \"1__0\": not a decimal integer"])
        #expect(errors("a = _1") == ["1: bad value \"_1\": strings must be in quotes"])
        #expect(errors("a = 012") == ["1: bad value \"012\": leading zeros are not allowed"])
        #expect(errors("a = 9223372036854775808") == ["1: integer 9223372036854775808 is too large"])
        #expect(read("a = -9223372036854775808").table.value("a")?.integerValue == Int64.min)
        #expect(errors(#"a = "\q""#) == [#"1: invalid escape "\\q" in string"#])
        #expect(errors(#"a = "\u12""#) == [#"1: invalid \u escape: expected 4 hex digits"#])
        #expect(errors(#"a = "\uD800""#) == ["1: invalid escape: U+D800 is not a Unicode scalar value"])
        #expect(errors("a = 1 2") == ["1: unexpected text after value: \"2\""])
        #expect(errors("[t] x") == ["1: unexpected text after table header: \"x\""])
    }

    @Test func keepsGoingAfterAnErrorOnALine() {
        #expect(
            errors("a = 1.5\nb = \"ok\"\nc = 2.5\nd = ")
                == ["1: floats are not supported here", "3: floats are not supported here", "4: missing value after \"=\""])
    }

    @Test func stopsAtAnErrorInsideAnArray() {
        let result = read("a = [\n  1,\n  2.5,\n]\nb = 1.5")
        #expect(result.errors.map(\.description) == ["3: floats are not supported here"])
    }

    @Test func unterminatedArray() {
        #expect(errors("a = [1,\n2") == ["1: unterminated array (missing \"]\")"])
        #expect(errors("a = [1 2]") == ["1: expected \",\" or \"]\" in array, found \"2\""])
    }

    @Test func keysAfterADuplicateTableAreDropped() {
        let result = read("[t]\nk = 1\n[t]\nk = 2")
        #expect(result.errors.map(\.description) == ["3: duplicate table [t] (first defined on line 1)"])
        #expect(result.table.table("t")?.value("k")?.integerValue == 1)
    }
}
