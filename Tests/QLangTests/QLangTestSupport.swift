import XCTest
@testable import QLang

func parse(_ text: String, file: String = "r.qsh") throws(Diagnostic) -> Program {
    try Parser.parse(SourceFile(name: file, text: text))
}

/// The diagnostic `text` produces; fails the test when it parses.
func diagnostic(_ text: String, file: StaticString = #filePath, line: UInt = #line) -> Diagnostic? {
    do {
        let program = try Parser.parse(SourceFile(name: "r.qsh", text: text))
        XCTFail("expected an error, parsed \(program)", file: file, line: line)
        return nil
    } catch {
        return error
    }
}

func command(_ name: String, _ arguments: [Argument] = []) -> Statement {
    .command(CommandStatement(name: name, location: nowhere, arguments: arguments))
}

func positional(_ value: ValueSyntax) -> Argument { .positional(Value(value, at: nowhere)) }

func option(_ key: String, _ value: ValueSyntax) -> Argument {
    .option(key: key, keyLocation: nowhere, value: Value(value, at: nowhere))
}

let nowhere = SourceLocation(file: "", line: 0, column: 0)

func kinds(_ text: String) throws -> [TokenKind] {
    try Lexer.tokens(of: SourceFile(name: "t", text: text)).map(\.kind)
}
