/// Writes syntax back as canonical recipe text: one statement per line, blocks indented
/// four spaces, options as `key=value`, strings re-escaped. Parsing the output gives
/// back an equal tree.
public enum Printer {
    public static func print(_ program: Program) -> String {
        program.statements.map { print($0) }.joined(separator: "\n")
    }

    public static func print(_ statement: Statement) -> String {
        var lines: [String] = []
        append(statement, indent: "", to: &lines)
        return lines.joined(separator: "\n")
    }

    public static func print(_ value: ValueSyntax) -> String {
        switch value {
        case .integer(let number): return String(number)
        // `description` is the shortest text that reads back as the same Double.
        case .decimal(let number): return number.description
        case .string(let text): return quoted(text)
        case .identifier(let name): return name
        case .boolean(let flag): return flag ? "true" : "false"
        case .variable(let name): return "$" + name
        case .range(let lower, let upper):
            return (lower.map { print($0) } ?? "") + ".." + (upper.map { print($0) } ?? "")
        case .list(let elements): return elements.map { print($0) }.joined(separator: ", ")
        }
    }

    /// `value` or `key=value`, as written in a command.
    public static func print(_ argument: Argument) -> String {
        switch argument {
        case .positional(let value): return print(value.syntax)
        case .option(let key, _, let value): return key + "=" + print(value.syntax)
        }
    }

    private static func append(_ statement: Statement, indent: String, to lines: inout [String]) {
        switch statement {
        case .command(let command):
            let words = [command.name] + command.arguments.map { print($0) }
            lines.append(indent + words.joined(separator: " "))
        case .assignment(let assignment):
            lines.append(indent + "let \(assignment.name) = \(print(assignment.value.syntax))")
        case .expectation(let expectation):
            var line = "expect \(print(expectation.subject.syntax)) \(expectation.comparison.rawValue) \(print(expectation.expected.syntax))"
            if let tolerance = expectation.tolerance { line += " +- \(print(tolerance.syntax))" }
            lines.append(indent + line)
        case .loop(let loop):
            lines.append(indent + "\(loop.kind.rawValue) \(loop.variable) in \(print(loop.values.syntax)) {")
            for inner in loop.body { append(inner, indent: indent + "    ", to: &lines) }
            lines.append(indent + "}")
        }
    }

    private static func quoted(_ text: String) -> String {
        var result = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": result += "\\\""
            case "\\": result += "\\\\"
            case "\n": result += "\\n"
            case "\t": result += "\\t"
            case "\r": result += "\\r"
            case "\0": result += "\\0"
            default:
                // Invisible characters are spelt out so the printed recipe shows them.
                if scalar.value < 0x20 || scalar.value == 0x7F || (0x80..<0xA0).contains(scalar.value) {
                    result += "\\u{" + String(scalar.value, radix: 16, uppercase: true) + "}"
                } else {
                    result.unicodeScalars.append(scalar)
                }
            }
        }
        return result + "\""
    }
}
