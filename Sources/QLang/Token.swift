/// A place in the source: scalar offset from the start, plus line and column from 1.
struct SourcePosition: Sendable, Equatable {
    var offset: Int
    var line: Int
    var column: Int
}

enum TokenKind: Sendable, Equatable {
    case identifier(String)
    case integer(Int)
    case decimal(Double)
    case string(String)
    /// `$name`, stored without the `$`.
    case variable(String)
    case dotDot
    case comma
    case equals
    case comparison(Comparison)
    /// `+-` or `±`
    case plusMinus
    case leftBrace
    case rightBrace
    case semicolon
    case newline
    case end
}

struct Token: Sendable, Equatable {
    var kind: TokenKind
    var start: SourcePosition
    /// Just past the last scalar of the token.
    var end: SourcePosition

    var length: Int { max(1, end.offset - start.offset) }

    /// True when `next` starts exactly where this token ends, with nothing in between.
    func touches(_ next: Token) -> Bool { next.start.offset == end.offset }

    /// How the token is named in error messages.
    var spelling: String {
        switch kind {
        case .identifier(let name): return "`\(name)`"
        case .integer(let value): return "`\(value)`"
        case .decimal(let value): return "`\(value)`"
        case .string: return "a string"
        case .variable(let name): return "`$\(name)`"
        case .dotDot: return "`..`"
        case .comma: return "`,`"
        case .equals: return "`=`"
        case .comparison(let comparison): return "`\(comparison.rawValue)`"
        case .plusMinus: return "`+-`"
        case .leftBrace: return "`{`"
        case .rightBrace: return "`}`"
        case .semicolon: return "`;`"
        case .newline: return "the end of the line"
        case .end: return "the end of the input"
        }
    }

    var endsStatement: Bool {
        switch kind {
        case .newline, .semicolon, .end, .rightBrace: return true
        default: return false
        }
    }
}
