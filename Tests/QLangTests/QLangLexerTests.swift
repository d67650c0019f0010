import XCTest
@testable import QLang

final class QLangLexerTests: XCTestCase {
    func testRangesLexAsIntegersAroundDots() throws {
        XCTAssertEqual(try kinds("2..7"), [.integer(2), .dotDot, .integer(7), .end])
        XCTAssertEqual(try kinds("3.."), [.integer(3), .dotDot, .end])
        XCTAssertEqual(try kinds("..5"), [.dotDot, .integer(5), .end])
        XCTAssertEqual(try kinds("$a..$b"), [.variable("a"), .dotDot, .variable("b"), .end])
    }

    func testNumbers() throws {
        XCTAssertEqual(try kinds("12 -3 0.4 -0.5 .5 -.5 1e-4 1.5E+3 1e-05 1e+16"),
                       [.integer(12), .integer(-3), .decimal(0.4), .decimal(-0.5), .decimal(0.5), .decimal(-0.5),
                        .decimal(1e-4), .decimal(1500), .decimal(1e-5), .decimal(1e16), .end])
        XCTAssertEqual(try kinds("-0"), [.integer(0), .end])
    }

    func testIdentifiersKeepDashesDotsAndPluses() throws {
        XCTAssertEqual(try kinds("nm-resnet56 cifar10-train layer2.0.conv1 kl+ce _x"),
                       [.identifier("nm-resnet56"), .identifier("cifar10-train"), .identifier("layer2.0.conv1"),
                        .identifier("kl+ce"), .identifier("_x"), .end])
        XCTAssertEqual(try kinds("x..5"), [.identifier("x"), .dotDot, .integer(5), .end])
        XCTAssertEqual(try kinds("top1+-0.5"), [.identifier("top1"), .plusMinus, .decimal(0.5), .end])
        XCTAssertEqual(try kinds("ab.c a.5 a+1"), [.identifier("ab.c"), .identifier("a.5"), .identifier("a+1"), .end])
    }

    func testOperatorsAndPunctuation() throws {
        XCTAssertEqual(try kinds("< <= == != >= > = +- ± ≤ ≥ ≠ , ; { }"),
                       [.comparison(.less), .comparison(.lessOrEqual), .comparison(.equal), .comparison(.notEqual),
                        .comparison(.greaterOrEqual), .comparison(.greater), .equals, .plusMinus, .plusMinus,
                        .comparison(.lessOrEqual), .comparison(.greaterOrEqual), .comparison(.notEqual),
                        .comma, .semicolon, .leftBrace, .rightBrace, .end])
    }

    func testStringsAndEscapes() throws {
        XCTAssertEqual(try kinds(#""a\"b\\c\nd\te\u{41}\u{1F600}""#), [.string("a\"b\\c\nd\teA\u{1F600}"), .end])
        XCTAssertEqual(try kinds("\"two\nlines\""), [.string("two\nlines"), .end])
        XCTAssertEqual(try kinds(##""# not a comment""##), [.string("# not a comment"), .end])
    }

    func testCommentsContinuationsAndLineBreaks() throws {
        XCTAssertEqual(try kinds("a # comment\nb"), [.identifier("a"), .newline, .identifier("b"), .end])
        XCTAssertEqual(try kinds("a \\  \n b"), [.identifier("a"), .identifier("b"), .end])
        XCTAssertEqual(try kinds("a\r\nb\rc"), [.identifier("a"), .newline, .identifier("b"), .newline, .identifier("c"), .end])
    }

    func testPositionsCountScalarsAndLines() throws {
        let tokens = try Lexer.tokens(of: SourceFile(name: "t", text: "ab  cd\r\n\té 5"))
        XCTAssertEqual(tokens.map(\.start.line), [1, 1, 1, 2, 2, 2])
        XCTAssertEqual(tokens.map(\.start.column), [1, 5, 7, 2, 4, 5])
    }

    func testLexicalErrors() {
        let cases: [(String, String, Int)] = [
            ("x \"abc", "unterminated string", 3),
            (#"x "a\qb""#, "unknown escape `\\q`", 5),
            (#""\u{D800}""#, "is not a Unicode scalar", 2),
            (#""\u{}""#, "malformed unicode escape", 2),
            ("3x", "invalid number", 1),
            ("99999999999999999999", "too large", 1),
            ("1e999", "out of range", 1),
            ("a ! b", "unexpected `!`", 3),
            ("a \u{0} b", "unexpected character U+0000", 3),
            ("a \u{FFFD}", "U+FFFD", 3),
            ("$ x", "variable name after `$`", 1),
        ]
        for (text, message, column) in cases {
            do {
                _ = try Lexer.tokens(of: SourceFile(name: "t", text: text))
                XCTFail("\(text) lexed")
            } catch {
                XCTAssertTrue(error.message.contains(message), "\(text): \(error.message)")
                XCTAssertEqual(error.location.column, column, text)
                XCTAssertNotNil(error.hint, text)
            }
        }
    }
}
