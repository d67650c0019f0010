/// A recipe text together with the name used in diagnostics.
public struct SourceFile: Sendable {
    public let name: String
    public let text: String

    public init(name: String, text: String) {
        self.name = name
        self.text = text
    }

    /// The 1-based line `number` without its line break, or "" when out of range.
    /// Line breaks are `\n`, `\r\n` and a lone `\r`, exactly as the lexer counts them,
    /// so a diagnostic's line number always finds the line it talks about.
    public func line(_ number: Int) -> String {
        guard number >= 1 else { return "" }
        var current = 1
        var content = String.UnicodeScalarView()
        var previousWasCarriageReturn = false
        for scalar in text.unicodeScalars {
            if scalar == "\n" && previousWasCarriageReturn {
                previousWasCarriageReturn = false
                continue
            }
            previousWasCarriageReturn = scalar == "\r"
            if scalar == "\n" || scalar == "\r" {
                if current == number { return String(content) }
                current += 1
                continue
            }
            if current == number { content.append(scalar) }
        }
        return current == number ? String(content) : ""
    }

    /// How many lines the text has; an empty text and a text ending in a line break
    /// both count the (empty) line after the last break.
    public var lineCount: Int {
        var count = 1
        var previousWasCarriageReturn = false
        for scalar in text.unicodeScalars {
            if scalar == "\n" && previousWasCarriageReturn {
                previousWasCarriageReturn = false
                continue
            }
            previousWasCarriageReturn = scalar == "\r"
            if scalar == "\n" || scalar == "\r" { count += 1 }
        }
        return count
    }
}
