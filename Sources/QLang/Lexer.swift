/// Splits a recipe into tokens on demand. Works on Unicode scalars so that columns are
/// stable for any input, including combining marks and replacement characters from
/// invalid UTF-8.
struct Lexer {
    private let scalars: [Unicode.Scalar]
    private let fileName: String
    private var position = SourcePosition(offset: 0, line: 1, column: 1)

    init(_ source: SourceFile) {
        scalars = Array(source.text.unicodeScalars)
        fileName = source.name
    }

    /// Every token of `source`, ending with `.end`; for tests and tools.
    static func tokens(of source: SourceFile) throws(Diagnostic) -> [Token] {
        var lexer = Lexer(source)
        var result: [Token] = []
        while true {
            let token = try lexer.next()
            result.append(token)
            if token.kind == .end { return result }
        }
    }

    func location(_ position: SourcePosition) -> SourceLocation {
        SourceLocation(file: fileName, line: position.line, column: position.column)
    }

    // MARK: - Reading scalars

    private func peek(_ ahead: Int = 0) -> Unicode.Scalar? {
        let index = position.offset + ahead
        return index < scalars.count ? scalars[index] : nil
    }

    private mutating func advance() {
        guard let scalar = peek() else { return }
        position.offset += 1
        // `\r\n` is one line break: the `\r` only moves the column, the `\n` breaks.
        if scalar == "\n" || (scalar == "\r" && peek() != "\n") {
            position.line += 1
            position.column = 1
        } else {
            position.column += 1
        }
    }

    private func error(_ message: String, from start: SourcePosition, length: Int = 1, hint: String?) -> Diagnostic {
        Diagnostic(message, at: location(start), length: length, hint: hint)
    }

    // MARK: - Tokens

    mutating func next() throws(Diagnostic) -> Token {
        try skipTrivia()
        let start = position
        guard let scalar = peek() else { return Token(kind: .end, start: start, end: start) }
        let kind = try lexToken(startingWith: scalar, at: start)
        return Token(kind: kind, start: start, end: position)
    }

    private mutating func lexToken(startingWith scalar: Unicode.Scalar, at start: SourcePosition) throws(Diagnostic) -> TokenKind {
        switch scalar {
        case "\n":
            advance()
            return .newline
        case "\r":
            advance()
            if peek() == "\n" { advance() }
            return .newline
        case ";": advance(); return .semicolon
        case ",": advance(); return .comma
        case "{": advance(); return .leftBrace
        case "}": advance(); return .rightBrace
        case "±": advance(); return .plusMinus
        case "≤": advance(); return .comparison(.lessOrEqual)
        case "≥": advance(); return .comparison(.greaterOrEqual)
        case "≠": advance(); return .comparison(.notEqual)
        case "=":
            advance()
            if peek() == "=" { advance(); return .comparison(.equal) }
            return .equals
        case "<":
            advance()
            if peek() == "=" { advance(); return .comparison(.lessOrEqual) }
            return .comparison(.less)
        case ">":
            advance()
            if peek() == "=" { advance(); return .comparison(.greaterOrEqual) }
            return .comparison(.greater)
        case "!":
            guard peek(1) == "=" else {
                throw error("unexpected `!`", from: start, hint: "did you mean `!=`?")
            }
            advance(); advance()
            return .comparison(.notEqual)
        case "+":
            guard peek(1) == "-" else {
                throw error("unexpected `+`", from: start,
                            hint: "numbers take no `+` sign; a tolerance is written `+- 0.5`")
            }
            advance(); advance()
            return .plusMinus
        case "-":
            if let next = peek(1), next.isDigit || (next == "." && peek(2)?.isDigit == true) {
                return try lexNumber(at: start)
            }
            throw error("unexpected `-`", from: start,
                        hint: "write negative numbers without a space, like `-3` or `-0.5`")
        case ".":
            if peek(1) == "." { advance(); advance(); return .dotDot }
            if peek(1)?.isDigit == true { return try lexNumber(at: start) }
            throw error("unexpected `.`", from: start,
                        hint: "a range is written `2..7`; a decimal needs digits after the point, like `0.5`")
        case "\"":
            return try lexString(at: start)
        case "$":
            advance()
            guard let next = peek(), next.isIdentifierStart else {
                throw error("expected a variable name after `$`", from: start,
                            hint: "variables are written `$name`, with the name right after the `$`")
            }
            return .variable(lexIdentifierText())
        case "\\":
            throw error("unexpected `\\`", from: start,
                        hint: "a `\\` continues a statement only as the last character of a line")
        case "\u{FFFD}":
            throw error("invalid or unreadable character (U+FFFD)", from: start,
                        hint: "the text is not valid UTF-8 here; retype or remove it")
        default:
            if scalar.isDigit { return try lexNumber(at: start) }
            if scalar.isIdentifierStart { return .identifier(lexIdentifierText()) }
            throw error("unexpected character \(scalar.debugName)", from: start,
                        hint: "remove it; statements are made of names, numbers, strings and `= , .. { } ;`")
        }
    }

    /// Spaces, comments and line continuations.
    private mutating func skipTrivia() throws(Diagnostic) {
        while let scalar = peek() {
            if scalar == "#" {
                while let next = peek(), next != "\n", next != "\r" { advance() }
            } else if scalar == "\\" {
                var ahead = 1
                while let next = peek(ahead), next == " " || next == "\t" { ahead += 1 }
                guard let afterSpaces = peek(ahead) else {
                    var diagnostic = error("the input ends after a line continuation `\\`", from: position,
                                           hint: "add the rest of the statement on the next line, or remove the `\\`")
                    diagnostic.isIncompleteInput = true
                    throw diagnostic
                }
                guard afterSpaces == "\n" || afterSpaces == "\r" else { return }
                for _ in 0..<ahead { advance() }
                let wasCarriageReturn = afterSpaces == "\r"
                advance()
                if wasCarriageReturn && peek() == "\n" { advance() }
            } else if scalar != "\n" && scalar != "\r" && scalar.properties.isWhitespace {
                advance()
            } else {
                return
            }
        }
    }

    private mutating func lexIdentifierText() -> String {
        var text = String.UnicodeScalarView()
        while let scalar = peek() {
            let joinsNext = (scalar == "." || scalar == "+") && (peek(1).map { $0.isLetter || $0.isDigit } ?? false)
            guard scalar.isIdentifierBody || joinsNext else { break }
            text.append(scalar)
            advance()
        }
        return String(text)
    }

    private mutating func lexNumber(at start: SourcePosition) throws(Diagnostic) -> TokenKind {
        var text = ""
        func take(_ lexer: inout Lexer) {
            if let scalar = lexer.peek() { text.unicodeScalars.append(scalar) }
            lexer.advance()
        }
        var isDecimal = false
        if peek() == "-" { take(&self) }
        if peek() == "." { text += "0" }
        while peek()?.isDigit == true { take(&self) }
        // `2..7` is 2, `..`, 7: a point only makes a decimal when a digit follows it.
        if peek() == ".", peek(1)?.isDigit == true {
            isDecimal = true
            take(&self)
            while peek()?.isDigit == true { take(&self) }
        }
        if let marker = peek(), marker == "e" || marker == "E" {
            let signed = peek(1) == "+" || peek(1) == "-"
            if peek(signed ? 2 : 1)?.isDigit == true {
                isDecimal = true
                take(&self)
                if signed { take(&self) }
                while peek()?.isDigit == true { take(&self) }
            }
        }
        if let next = peek(), next.isIdentifierBody || (next == "." && peek(1)?.isDigit == true) {
            while let scalar = peek(), scalar.isIdentifierBody || scalar == "." { advance() }
            throw error("invalid number", from: start, length: position.offset - start.offset,
                        hint: "names start with a letter or `_`; put a space between a number and what follows")
        }
        let length = position.offset - start.offset
        if isDecimal {
            guard let value = Double(text), value.isFinite else {
                throw error("number `\(text)` is out of range", from: start, length: length,
                            hint: "decimals must lie within ±1.8e308")
            }
            return .decimal(value)
        }
        guard let value = Int(text) else {
            throw error("integer `\(text)` is too large", from: start, length: length,
                        hint: "integers must lie within ±\(Int.max); write a decimal such as `1e30` for larger values")
        }
        return .integer(value)
    }

    private mutating func lexString(at start: SourcePosition) throws(Diagnostic) -> TokenKind {
        advance()
        var text = String.UnicodeScalarView()
        while true {
            guard let scalar = peek() else {
                var diagnostic = error("unterminated string", from: start,
                                       hint: "close it with `\"`")
                diagnostic.isIncompleteInput = true
                throw diagnostic
            }
            if scalar == "\"" {
                advance()
                return .string(String(text))
            }
            if scalar == "\\" {
                text.append(try lexEscape())
                continue
            }
            text.append(scalar)
            advance()
        }
    }

    private mutating func lexEscape() throws(Diagnostic) -> Unicode.Scalar {
        let start = position
        advance()
        guard let code = peek() else {
            var diagnostic = error("unterminated string", from: start, hint: "close it with `\"`")
            diagnostic.isIncompleteInput = true
            throw diagnostic
        }
        let escapes = "valid escapes are \\\" \\\\ \\n \\t \\r \\0 and \\u{41}"
        switch code {
        case "\"": advance(); return "\""
        case "\\": advance(); return "\\"
        case "n": advance(); return "\n"
        case "t": advance(); return "\t"
        case "r": advance(); return "\r"
        case "0": advance(); return "\0"
        case "u":
            advance()
            let malformed = error("malformed unicode escape", from: start, length: position.offset - start.offset,
                                  hint: "write `\\u{` then 1 to 8 hex digits then `}`, like `\\u{41}`")
            guard peek() == "{" else { throw malformed }
            advance()
            var value: UInt32 = 0
            var digits = 0
            while let scalar = peek(), let digit = scalar.hexValue {
                guard digits < 8 else { break }
                value = value &* 16 &+ digit
                digits += 1
                advance()
            }
            guard digits > 0, peek() == "}" else {
                throw error("malformed unicode escape", from: start, length: position.offset - start.offset,
                            hint: "write `\\u{` then 1 to 8 hex digits then `}`, like `\\u{41}`")
            }
            advance()
            guard let scalar = Unicode.Scalar(value) else {
                throw error("`\\u{\(String(value, radix: 16, uppercase: true))}` is not a Unicode scalar",
                            from: start, length: position.offset - start.offset,
                            hint: "use a code point up to 10FFFF outside the surrogate range D800-DFFF")
            }
            return scalar
        default:
            throw error("unknown escape `\\\(code.plainName)`", from: start, length: 2, hint: escapes)
        }
    }
}

extension Unicode.Scalar {
    var isDigit: Bool { ("0"..."9").contains(self) }
    var isLetter: Bool { properties.isAlphabetic }
    var isIdentifierStart: Bool { self == "_" || isLetter }
    var isIdentifierBody: Bool {
        if isIdentifierStart || isDigit || self == "-" { return true }
        // Combining accents belong to the letter before them.
        switch properties.generalCategory {
        case .nonspacingMark, .spacingMark: return true
        default: return false
        }
    }

    var hexValue: UInt32? {
        switch self {
        case "0"..."9": return value - 48
        case "a"..."f": return value - 97 + 10
        case "A"..."F": return value - 65 + 10
        default: return nil
        }
    }

    /// A readable name for messages: the character itself when printable, else U+XXXX.
    var debugName: String {
        isPrintable ? "`\(Character(self))`" : plainName
    }

    var plainName: String {
        if isPrintable { return String(Character(self)) }
        let hex = String(value, radix: 16, uppercase: true)
        return "U+" + String(repeating: "0", count: max(0, 4 - hex.count)) + hex
    }

    private var isPrintable: Bool {
        !(value < 0x20 || value == 0x7F || properties.isWhitespace || properties.generalCategory == .format
            || properties.generalCategory == .control || properties.generalCategory == .surrogate
            || properties.generalCategory == .unassigned || properties.generalCategory == .nonspacingMark)
    }
}
