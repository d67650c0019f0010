import XCTest
@testable import QLang

final class QLangParserTests: XCTestCase {
    func testCommandsWithPositionalsAndOptions() throws {
        let program = try parse("""
            help
            quantize layer 2..5 bits=6 scheme=dorefa
            load resnet20 from "x.th"; plot hist layer 3 to "f.svg"
            compensate dfmpc lambda = 0.4 verbose=true
            """)
        XCTAssertEqual(program.statements, [
            command("help"),
            command("quantize", [positional(.identifier("layer")), positional(.range(lower: .integer(2), upper: .integer(5))),
                                 option("bits", .integer(6)), option("scheme", .identifier("dorefa"))]),
            command("load", [positional(.identifier("resnet20")), positional(.identifier("from")), positional(.string("x.th"))]),
            command("plot", [positional(.identifier("hist")), positional(.identifier("layer")), positional(.integer(3)),
                             positional(.identifier("to")), positional(.string("f.svg"))]),
            command("compensate", [positional(.identifier("dfmpc")), option("lambda", .decimal(0.4)), option("verbose", .boolean(true))]),
        ])
    }

    func testValues() throws {
        let program = try parse("show 12 -3 .5 1e-4 \"s\" false all $v 3.. ..5 $a..$b 1, 4, 7..9")
        guard case .command(let show) = program.statements.first else { return XCTFail() }
        let values: [ValueSyntax] = show.arguments.map { argument -> ValueSyntax in
            if case .positional(let value) = argument { return value.syntax }
            return .string("option")
        }
        XCTAssertEqual(values, [
            .integer(12), .integer(-3), .decimal(0.5), .decimal(1e-4), .string("s"), .boolean(false),
            .identifier("all"), .variable("v"), .range(lower: .integer(3), upper: nil), .range(lower: nil, upper: .integer(5)),
            .range(lower: .variable("a"), upper: .variable("b")),
            .list([.integer(1), .integer(4), .range(lower: .integer(7), upper: .integer(9))]),
        ])
    }

    func testSeparatorsCommentsAndContinuations() throws {
        let program = try parse("""

            ;; a # first
            # only a comment
            b x=1, \\
              2
            c layers=1,
                3 ; d
            """)
        XCTAssertEqual(program.statements, [
            command("a"),
            command("b", [option("x", .list([.integer(1), .integer(2)]))]),
            command("c", [option("layers", .list([.integer(1), .integer(3)]))]),
            command("d"),
        ])
    }

    func testLetForAndExpect() throws {
        let program = try parse("""
            let lam = 0.4
            let bits = 2, 4
            for b in 2..8 {
                for lam in 0.1, 0.2 { compensate dfmpc lambda=$lam }
                expect top1 >= 90.5
            }
            for x in 5 { }
            for x in $bits
            {
                expect $x == 91.73 +- 0.05
                expect top1 != 3 ± $tol
            }
            """)
        let s = program.statements
        XCTAssertEqual(s.count, 5)
        XCTAssertEqual(s[0], .assignment(LetStatement(name: "lam", location: nowhere, value: Value(.decimal(0.4), at: nowhere))))
        XCTAssertEqual(s[1], .assignment(LetStatement(name: "bits", location: nowhere, value: Value(.list([.integer(2), .integer(4)]), at: nowhere))))
        guard case .loop(let outer) = s[2], case .loop(let inner) = outer.body[0], case .loop(let single) = s[3],
              case .loop(let overVariable) = s[4] else { return XCTFail("\(s)") }
        XCTAssertEqual(outer.variable, "b")
        XCTAssertEqual(outer.values.syntax, .range(lower: .integer(2), upper: .integer(8)))
        XCTAssertEqual(inner.values.syntax, .list([.decimal(0.1), .decimal(0.2)]))
        XCTAssertEqual(inner.body, [command("compensate", [positional(.identifier("dfmpc")), option("lambda", .variable("lam"))])])
        XCTAssertEqual(outer.body[1], .expectation(ExpectStatement(location: nowhere, subject: Value(.identifier("top1"), at: nowhere),
            comparison: .greaterOrEqual, expected: Value(.decimal(90.5), at: nowhere), tolerance: nil)))
        XCTAssertEqual(single.values.syntax, .list([.integer(5)]), "a single value loops as a list of one")
        XCTAssertEqual(single.body, [])
        XCTAssertEqual(overVariable.values.syntax, .variable("bits"))
        XCTAssertEqual(overVariable.body, [
            .expectation(ExpectStatement(location: nowhere, subject: Value(.variable("x"), at: nowhere), comparison: .equal,
                                         expected: Value(.decimal(91.73), at: nowhere), tolerance: Value(.decimal(0.05), at: nowhere))),
            .expectation(ExpectStatement(location: nowhere, subject: Value(.identifier("top1"), at: nowhere), comparison: .notEqual,
                                         expected: Value(.integer(3), at: nowhere), tolerance: Value(.variable("tol"), at: nowhere))),
        ])
    }

    func testKeywordsOnlyWhereTheGrammarNeedsThem() throws {
        let program = try parse("set mode=in x=let in")
        XCTAssertEqual(program.statements, [command("set", [option("mode", .identifier("in")), option("x", .identifier("let")),
                                                            positional(.identifier("in"))])])
    }

    func testLocations() throws {
        let program = try parse("a\n  quantize  bits=4 layer\nfor i in 1,2 {\n\tlet x = 3\n}", file: "f.qsh")
        guard case .command(let quantize) = program.statements[1], case .loop(let loop) = program.statements[2],
              case .option(_, let keyLocation, let value) = quantize.arguments[0] else { return XCTFail() }
        XCTAssertEqual("\(quantize.location)", "f.qsh:2:3")
        XCTAssertEqual("\(keyLocation)", "f.qsh:2:13")
        XCTAssertEqual("\(value.location)", "f.qsh:2:18")
        XCTAssertEqual("\(loop.location)", "f.qsh:3:1")
        XCTAssertEqual("\(loop.values.location)", "f.qsh:3:10")
        XCTAssertEqual("\(loop.body[0].location)", "f.qsh:4:2")
    }

    func testNestingIsCappedWithADiagnostic() throws {
        let allowed = String(repeating: "for i in 1,2 {\n", count: Parser.maximumNestingDepth)
            + String(repeating: "}\n", count: Parser.maximumNestingDepth)
        XCTAssertNoThrow(try parse(allowed))
        let tooDeep = String(repeating: "for i in 1,2 { ", count: 10_000)
        let error = try XCTUnwrap(diagnostic(tooDeep))
        XCTAssertTrue(error.message.contains("nest"), error.message)
        XCTAssertEqual(error.location.column, 15 * Parser.maximumNestingDepth + 1)
    }

    func testNeedsMoreInput() {
        for text in ["for b in 2..8 {", "for b in 2..8 {\n  eval\n", "quantize layer 1,", "let x = 1, 2,\n# c\n", "load \"abc",
                     "load \"a\\", "eval \\", "eval \\  ", "for a in 1,2 { for b in 3,4 { x }"] {
            XCTAssertTrue(Parser.needsMoreInput(text), text)
        }
        for text in ["", "eval", "for b in 2..8 { }", "}", "let x = ", "for b in 2..8 {\n  eval =\n", "load \"abc\"",
                     "a \\ b", "quantize 1,;"] {
            XCTAssertFalse(Parser.needsMoreInput(text), text)
        }
    }
}
