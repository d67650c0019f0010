import XCTest
@testable import QLang

final class QLangDiagnosticTests: XCTestCase {
    /// Each faulty recipe, the message fragment, the line:column it must point at, and a hint fragment.
    func testEveryErrorPointsAtTheFaultWithAHint() throws {
        let cases: [(text: String, message: String, line: Int, column: Int, hint: String)] = [
            ("load x from \"a.th", "unterminated string", 1, 13, "close it with `\"`"),
            ("expect top1 => 90", "`=>` is not a comparison", 1, 13, "did you mean `>=`?"),
            ("expect top1 =< 90", "`=<` is not a comparison", 1, 13, "did you mean `<=`?"),
            ("expect top1 = 90", "doesn't compare", 1, 13, "did you mean `==`?"),
            ("expect top1 90", "expected a comparison", 1, 13, "<="),
            ("expect 90 > 3", "expected a result name", 1, 8, "expect top1"),
            ("expect top1 >= 90 +- -1", "can't be negative", 1, 22, "without the `-`"),
            ("expect top1 >= 1, 2", "not a list", 1, 17, "one `expect`"),
            ("let = 3", "expected a variable name after `let`", 1, 5, "let name = value"),
            ("let $x = 3", "expected a variable name after `let`", 1, 5, "without `$`"),
            ("let x 3", "expected `=`", 1, 7, "let x = value"),
            ("let x =\n", "expected a value", 1, 8, "let x = value"),
            ("let x = 3 4", "after the end of the statement", 1, 11, "`;`"),
            ("for x in { }", "expected the values", 1, 10, "2..8"),
            ("for in 1,2 { }", "expected `in`", 1, 8, "for in in values"),
            ("for x 1,2 { }", "expected `in`", 1, 7, "for x in values"),
            ("for x in 1..\n{ }", "both ends", 1, 10, "2..8"),
            ("for x in 1, 2 eval", "expected `{`", 1, 15, "for x in values"),
            ("a\nfor x in 1,2 {\n  eval\n", "never closed", 2, 14, "add a matching `}`"),
            ("eval\n  }", "unmatched `}`", 2, 3, "remove it"),
            ("quantize bits=", "missing value after `bits=`", 1, 15, "bits=value"),
            ("quantize bits= ; eval", "missing value after `bits=`", 1, 15, "bits=value"),
            ("quantize layer 1..2..3", "at most two ends", 1, 20, "1..3"),
            ("quantize layer 1.5..3", "can't be the end of a range", 1, 16, "whole numbers"),
            ("quantize layer 1..3.5", "can't be the end of a range", 1, 19, "2..7"),
            ("quantize layer -1..3", "negative", 1, 16, "from 0"),
            ("quantize layer x..3", "can't be the end of a range", 1, 16, "$first..$last"),
            ("quantize layer 2 .. 7", "at least one end", 1, 18, "without spaces"),
            ("print \"a\\qb\"", "unknown escape `\\q`", 1, 9, "\\u{41}"),
            ("quantize layer 1,", "the list ends with `,`", 1, 17, "remove the `,`"),
            ("quantize layer 1, ;", "expected a list item", 1, 19, "remove the `,`"),
            ("quantize 1, 2=3", "only a name", 1, 10, "key=value"),
            ("3 eval", "expected a command", 1, 1, "command word"),
            ("{ eval }", "unexpected `{`", 1, 1, "for NAME in VALUES"),
            ("eval { }", "unexpected `{`", 1, 6, "for NAME in VALUES"),
            ("eval x=1 =", "unexpected `=`", 1, 10, "key=value"),
            ("eval \\ x", "unexpected `\\`", 1, 6, "last character"),
            ("eval 1.", "unexpected `.`", 1, 7, "0.5"),
            ("eval + 3", "unexpected `+`", 1, 6, "+- 0.5"),
            ("eval \\", "ends after a line continuation", 1, 6, "next line"),
        ]
        for entry in cases {
            guard let error = diagnostic(entry.text) else { continue }
            XCTAssertTrue(error.message.contains(entry.message), "\(entry.text): \(error.message)")
            XCTAssertEqual(error.location.line, entry.line, "\(entry.text): \(error)")
            XCTAssertEqual(error.location.column, entry.column, "\(entry.text): \(error)")
            XCTAssertEqual(error.location.file, "r.qsh")
            XCTAssertTrue(error.hint?.contains(entry.hint) == true, "\(entry.text): \(error.hint ?? "no hint")")
        }
    }

    func testRenderingShowsTheLineWithACaretAndHint() throws {
        let source = SourceFile(name: "recipe.qsh", text: "load resnet20\nexpect top1 => 90\n")
        let error = try XCTUnwrap(diagnostic(source.text))
        XCTAssertEqual(error.rendered(source: source), """
            recipe.qsh:2:13: error: `=>` is not a comparison
              expect top1 => 90
                          ^~
              hint: did you mean `>=`?
            """.replacingOccurrences(of: "recipe.qsh", with: "r.qsh"))
        XCTAssertEqual(error.description, "r.qsh:2:13: error: `=>` is not a comparison\n  hint: did you mean `>=`?")
    }

    func testCaretFollowsTabsAndStaysOnTheLine() {
        let source = SourceFile(name: "t", text: "\tquantize\tbits=99999999999999999999999")
        let error = Diagnostic("too large", at: SourceLocation(file: "t", line: 1, column: 16), length: 40, hint: nil)
        XCTAssertEqual(error.rendered(source: source).split(separator: "\n", omittingEmptySubsequences: false).last,
                       "  \t        \t     ^" + String(repeating: "~", count: 22), "the caret stops at the end of the 23 digits")
        let bare = Diagnostic("m", at: SourceLocation(file: "t", line: 7, column: 3), length: 0, hint: "h")
        XCTAssertEqual(bare.length, 1)
        XCTAssertEqual(bare.rendered(source: source), "t:7:3: error: m\n  \n    ^\n  hint: h")
    }

    func testSourceLines() {
        let source = SourceFile(name: "t", text: "a\r\nb\rc\n\nd")
        XCTAssertEqual((0...6).map { source.line($0) }, ["", "a", "b", "c", "", "d", ""])
        XCTAssertEqual(source.lineCount, 5)
        XCTAssertEqual(SourceFile(name: "t", text: "").line(1), "")
    }
}
