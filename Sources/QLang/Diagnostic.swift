/// A problem found in a recipe, pointing at the place it was found and saying how to fix it.
public struct Diagnostic: Error, Sendable, CustomStringConvertible {
    public var message: String
    public var location: SourceLocation
    public var hint: String?
    /// Width of the caret underline, at least 1.
    public var length: Int
    /// Set when the text ended where more input would have made it valid (an open `{`,
    /// a trailing `\` or `,`, an open string); the REPL then keeps reading lines.
    var isIncompleteInput = false

    public init(_ message: String, at location: SourceLocation, length: Int = 1, hint: String? = nil) {
        self.message = message
        self.location = location
        self.length = max(1, length)
        self.hint = hint
    }

    /// "file:line:col: error: message", then the source line with a caret under the
    /// fault (only when `source` is given), then the hint.
    public func rendered(source: SourceFile?) -> String {
        var lines = ["\(location): error: \(message)"]
        if let source {
            let sourceLine = Array(source.line(location.line).unicodeScalars)
            lines.append("  " + Self.printable(sourceLine))
            // Tabs stay tabs in the indentation so the caret lines up however wide the
            // terminal draws them.
            var indent = ""
            let column = max(1, location.column)
            for index in 0..<(column - 1) {
                indent += index < sourceLine.count && sourceLine[index] == "\t" ? "\t" : " "
            }
            let remaining = max(1, sourceLine.count - (column - 1))
            let width = min(max(1, length), remaining)
            lines.append("  " + indent + "^" + String(repeating: "~", count: width - 1))
        }
        if let hint { lines.append("  hint: \(hint)") }
        return lines.joined(separator: "\n")
    }

    public var description: String { rendered(source: nil) }

    /// Control characters would garble the terminal; each becomes one visible character
    /// so the caret below still lines up.
    private static func printable(_ scalars: [Unicode.Scalar]) -> String {
        var view = String.UnicodeScalarView()
        for scalar in scalars {
            if scalar == "\t" {
                view.append(scalar)
            } else if scalar.value < 0x20 || scalar.value == 0x7F {
                view.append("\u{FFFD}")
            } else {
                view.append(scalar)
            }
        }
        return String(view)
    }
}
