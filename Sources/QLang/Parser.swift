/// Turns recipe text into a `Program`. Recursive descent over a lazily lexed token
/// stream, so the first error in reading order is the one reported.
public enum Parser {
    /// Blocks nest at most this deep; deeper input is rejected with a diagnostic
    /// instead of exhausting the stack.
    public static let maximumNestingDepth = 64

    public static func parse(_ source: SourceFile) throws(Diagnostic) -> Program {
        var parser = try RecipeParser(source)
        return Program(statements: try parser.parseStatements(depth: 0, openingBrace: nil))
    }

    /// True when `text` is a prefix of a valid program that needs more lines: an unclosed
    /// `{`, a trailing `\`, a trailing `,` in a list, an unterminated string at the end.
    public static func needsMoreInput(_ text: String) -> Bool {
        do {
            _ = try parse(SourceFile(name: "<input>", text: text))
            return false
        } catch {
            return error.isIncompleteInput
        }
    }
}

private struct RecipeParser {
    private var lexer: Lexer
    private var current: Token
    private var lookahead: Token?
    /// End of the last token consumed; errors about something missing point here.
    private var previousEnd: SourcePosition

    init(_ source: SourceFile) throws(Diagnostic) {
        lexer = Lexer(source)
        current = try lexer.next()
        previousEnd = current.start
    }

    // MARK: - Token stream

    private mutating func advance() throws(Diagnostic) {
        previousEnd = current.end
        if let next = lookahead {
            current = next
            lookahead = nil
        } else {
            current = try lexer.next()
        }
    }

    private mutating func peekNext() throws(Diagnostic) -> Token {
        if let lookahead { return lookahead }
        let next = try lexer.next()
        lookahead = next
        return next
    }

    private mutating func skipNewlines() throws(Diagnostic) {
        while current.kind == .newline { try advance() }
    }

    private func location(_ position: SourcePosition) -> SourceLocation { lexer.location(position) }

    private func error(_ message: String, at token: Token, hint: String?) -> Diagnostic {
        // Newlines and the end have no width of their own: point just after what came before.
        if token.kind == .newline || token.kind == .end {
            return Diagnostic(message, at: location(previousEnd), hint: hint)
        }
        return Diagnostic(message, at: location(token.start), length: token.length, hint: hint)
    }

    // MARK: - Statements

    mutating func parseStatements(depth: Int, openingBrace: Token?) throws(Diagnostic) -> [Statement] {
        var statements: [Statement] = []
        while true {
            while current.kind == .newline || current.kind == .semicolon { try advance() }
            switch current.kind {
            case .end:
                guard let openingBrace else { return statements }
                var diagnostic = Diagnostic("this `{` is never closed", at: location(openingBrace.start),
                                            hint: "add a matching `}` after the loop body")
                diagnostic.isIncompleteInput = true
                throw diagnostic
            case .rightBrace:
                guard openingBrace != nil else {
                    throw error("unmatched `}`", at: current, hint: "remove it, or open the block with `for NAME in VALUES {`")
                }
                try advance()
                return statements
            default:
                let statement = try parseStatement(depth: depth)
                statements.append(statement)
                if case .loop = statement { continue }
                guard current.endsStatement else {
                    throw error("unexpected \(current.spelling) after the end of the statement", at: current,
                                hint: "separate statements with `;` or a new line; separate list items with `,`")
                }
            }
        }
    }

    private mutating func parseStatement(depth: Int) throws(Diagnostic) -> Statement {
        guard case .identifier(let word) = current.kind else {
            throw statementStartError()
        }
        switch word {
        case "let": return .assignment(try parseLet())
        case "for": return .loop(try parseFor(depth: depth, kind: .sequential))
        case "sweep": return .loop(try parseFor(depth: depth, kind: .sweep))
        case "expect": return .expectation(try parseExpect())
        default: return .command(try parseCommand(name: word))
        }
    }

    private func statementStartError() -> Diagnostic {
        switch current.kind {
        case .leftBrace:
            return error("unexpected `{`", at: current, hint: "a block only follows `for NAME in VALUES`")
        case .variable:
            return error("a statement can't start with \(current.spelling)", at: current,
                         hint: "to change a variable write `let name = value`")
        default:
            return error("expected a command, found \(current.spelling)", at: current,
                         hint: "a statement starts with a command word such as `load`, or with `let`, `for`, `sweep` or `expect`")
        }
    }

    private mutating func parseLet() throws(Diagnostic) -> LetStatement {
        let keyword = current
        try advance()
        let name: String
        switch current.kind {
        case .identifier(let identifier):
            name = identifier
            try advance()
        case .variable(let identifier):
            throw error("expected a variable name after `let`", at: current,
                        hint: "write the name without `$`: `let \(identifier) = value`")
        default:
            throw error("expected a variable name after `let`", at: current, hint: "write `let name = value`")
        }
        switch current.kind {
        case .equals:
            try advance()
        case .comparison(.equal):
            throw error("expected `=` after `let \(name)`", at: current, hint: "assign with a single `=`")
        default:
            throw error("expected `=` after `let \(name)`", at: current, hint: "write `let \(name) = value`")
        }
        guard !current.endsStatement else {
            throw error("expected a value after `let \(name) =`", at: current, hint: "write `let \(name) = value`")
        }
        let value = try parseValue()
        return LetStatement(name: name, location: location(keyword.start), value: value)
    }

    private mutating func parseFor(depth: Int, kind: LoopKind) throws(Diagnostic) -> ForStatement {
        let keyword = current
        let word = kind.rawValue
        guard kind == .sequential || depth == 0 else {
            // Sweep items are what shards share out; nested, they would be items of items.
            throw error("a `sweep` can only stand at the top level of a recipe", at: keyword,
                        hint: "use `for` inside the sweep, or move the sweep outside the block")
        }
        guard depth < Parser.maximumNestingDepth else {
            throw error("loops nest more than \(Parser.maximumNestingDepth) levels deep", at: keyword,
                        hint: "flatten the recipe, for example by listing values in one loop")
        }
        try advance()
        let variable: String
        switch current.kind {
        case .identifier(let identifier):
            variable = identifier
            try advance()
        case .variable(let identifier):
            throw error("expected a loop variable name after `\(word)`", at: current,
                        hint: "write the name without `$`: `\(word) \(identifier) in values { ... }`")
        default:
            throw error("expected a loop variable name after `\(word)`", at: current,
                        hint: "write `\(word) name in values { ... }`")
        }
        guard current.kind == .identifier("in") else {
            throw error("expected `in` after `\(word) \(variable)`", at: current,
                        hint: "write `\(word) \(variable) in values { ... }`")
        }
        try advance()
        guard !current.endsStatement, current.kind != .leftBrace else {
            throw error("expected the values to loop over", at: current,
                        hint: "give a list or a bounded range, like `\(word) \(variable) in 0.1, 0.2 { ... }` or `\(word) \(variable) in 2..8 { ... }`")
        }
        let valuesStart = current
        var values = try parseValue()
        switch values.syntax {
        case .list, .variable:
            break
        case .range(let lower, let upper):
            guard lower != nil, upper != nil else {
                throw error("a loop needs a range with both ends", at: valuesStart,
                            hint: "give both ends, like `2..8`")
            }
        default:
            // A single value is a list of one, so the loop body always sees list items.
            values = Value(.list([values.syntax]), at: values.location)
        }
        try skipNewlines()
        guard current.kind == .leftBrace else {
            throw error("expected `{` to start the loop body, found \(current.spelling)", at: current,
                        hint: "write `\(word) \(variable) in values { ... }`; separate list items with `,`")
        }
        let brace = current
        try advance()
        let body = try parseStatements(depth: depth + 1, openingBrace: brace)
        return ForStatement(kind: kind, variable: variable, location: location(keyword.start), values: values, body: body)
    }

    private mutating func parseExpect() throws(Diagnostic) -> ExpectStatement {
        let keyword = current
        try advance()
        let subject: Value
        switch current.kind {
        case .identifier(let name):
            subject = Value(.identifier(name), at: location(current.start))
        case .variable(let name):
            subject = Value(.variable(name), at: location(current.start))
        default:
            throw error("expected a result name or `$variable` after `expect`", at: current,
                        hint: "write `expect top1 >= 90`")
        }
        try advance()
        let comparison = try parseComparison()
        guard !current.endsStatement else {
            throw error("expected a value after `\(comparison.rawValue)`", at: current,
                        hint: "write `expect top1 \(comparison.rawValue) 90`")
        }
        let expectedStart = current
        let expected = try parseElement()
        if case .range = expected.syntax {
            throw error("`expect` compares with a single value, not a range", at: expectedStart,
                        hint: "write two expectations, one per bound")
        }
        if current.kind == .comma {
            throw error("`expect` compares with a single value, not a list", at: current,
                        hint: "write one `expect` per value")
        }
        var tolerance: Value?
        if current.kind == .plusMinus {
            try advance()
            switch current.kind {
            case .integer(let number) where number >= 0:
                tolerance = Value(.integer(number), at: location(current.start))
            case .decimal(let number) where number >= 0:
                tolerance = Value(.decimal(number), at: location(current.start))
            case .variable(let name):
                tolerance = Value(.variable(name), at: location(current.start))
            case .integer, .decimal:
                throw error("a tolerance can't be negative", at: current, hint: "write it without the `-`")
            default:
                throw error("expected a tolerance after `+-`", at: current,
                            hint: "write a non-negative number, like `expect top1 == 91.7 +- 0.05`")
            }
            try advance()
        }
        return ExpectStatement(location: location(keyword.start), subject: subject, comparison: comparison,
                               expected: expected, tolerance: tolerance)
    }

    private mutating func parseComparison() throws(Diagnostic) -> Comparison {
        let operatorToken = current
        switch operatorToken.kind {
        case .comparison(let comparison):
            try advance()
            return comparison
        case .equals:
            // `=>` and `=<` lex as `=` then `>`; name the operator that was meant.
            let next = try peekNext()
            if operatorToken.touches(next), case .comparison(let flipped) = next.kind,
               flipped == .greater || flipped == .less {
                let meant = flipped == .greater ? ">=" : "<="
                throw Diagnostic("`=\(flipped.rawValue)` is not a comparison", at: location(operatorToken.start),
                                 length: 2, hint: "did you mean `\(meant)`?")
            }
            throw error("`=` assigns; it doesn't compare", at: operatorToken, hint: "did you mean `==`?")
        default:
            throw error("expected a comparison, found \(operatorToken.spelling)", at: operatorToken,
                        hint: "compare with one of < <= == != >= >, like `expect top1 >= 90`")
        }
    }

    private mutating func parseCommand(name: String) throws(Diagnostic) -> CommandStatement {
        let nameToken = current
        try advance()
        var arguments: [Argument] = []
        while !current.endsStatement {
            if case .identifier(let key) = current.kind, try peekNext().kind == .equals {
                let keyToken = current
                try advance()
                let equals = current
                try advance()
                guard !current.endsStatement else {
                    throw Diagnostic("missing value after `\(key)=`", at: location(equals.end),
                                     hint: "write `\(key)=value`")
                }
                let value = try parseValue()
                arguments.append(.option(key: key, keyLocation: location(keyToken.start), value: value))
            } else {
                let valueStart = current
                let value = try parseValue()
                if current.kind == .equals {
                    throw error("only a name can stand before `=`", at: valueStart,
                                hint: "write options as `key=value`, like `bits=4`")
                }
                arguments.append(.positional(value))
            }
        }
        return CommandStatement(name: name, location: location(nameToken.start), arguments: arguments)
    }

    // MARK: - Values

    /// A single value, or a comma list of them.
    private mutating func parseValue() throws(Diagnostic) -> Value {
        let first = try parseElement()
        guard current.kind == .comma else { return first }
        var elements = [first.syntax]
        while current.kind == .comma {
            let comma = current
            try advance()
            try skipNewlines()
            if current.kind == .end {
                var diagnostic = Diagnostic("the list ends with `,`", at: location(comma.start),
                                            hint: "add the next item, or remove the `,`")
                diagnostic.isIncompleteInput = true
                throw diagnostic
            }
            guard current.startsValue else {
                throw error("expected a list item after `,`, found \(current.spelling)", at: current,
                            hint: "add the next item, or remove the `,`")
            }
            elements.append(try parseElement().syntax)
        }
        return Value(.list(elements), at: first.location)
    }

    /// One list item: a number, string, boolean, name, variable or range.
    private mutating func parseElement() throws(Diagnostic) -> Value {
        let token = current
        let at = location(token.start)
        switch token.kind {
        case .integer(let number):
            try advance()
            guard current.kind == .dotDot, token.touches(current) else { return Value(.integer(number), at: at) }
            guard number >= 0 else {
                throw error("a range can't start at a negative number", at: token,
                            hint: "ranges count layers and steps from 0 upwards")
            }
            return try parseRange(lower: .integer(number), startingAt: at)
        case .variable(let name):
            try advance()
            guard current.kind == .dotDot, token.touches(current) else { return Value(.variable(name), at: at) }
            return try parseRange(lower: .variable(name), startingAt: at)
        case .dotDot:
            return try parseRange(lower: nil, startingAt: at)
        case .decimal(let number):
            try advance()
            try rejectRangeAfter(token, hint: "range ends are whole numbers, like `2..7`")
            return Value(.decimal(number), at: at)
        case .identifier(let name):
            try advance()
            try rejectRangeAfter(token, hint: "range ends are non-negative integers or variables, like `2..7` or `$first..$last`")
            switch name {
            case "true": return Value(.boolean(true), at: at)
            case "false": return Value(.boolean(false), at: at)
            default: return Value(.identifier(name), at: at)
            }
        case .string(let text):
            try advance()
            try rejectRangeAfter(token, hint: "range ends are non-negative integers or variables, like `2..7`")
            return Value(.string(text), at: at)
        case .equals:
            throw error("unexpected `=`", at: token, hint: "write options as `key=value`, with a name before the `=`")
        case .leftBrace:
            throw error("unexpected `{`", at: token, hint: "a block only follows `for NAME in VALUES`")
        default:
            throw error("expected a value, found \(token.spelling)", at: token,
                        hint: "values are numbers, strings, names, `$variables`, ranges like `2..7` and lists like `1, 2`")
        }
    }

    private mutating func rejectRangeAfter(_ token: Token, hint: String) throws(Diagnostic) {
        guard current.kind == .dotDot, token.touches(current) else { return }
        throw error("\(token.spelling) can't be the end of a range", at: token, hint: hint)
    }

    /// `current` is the `..`; ranges are written without spaces, so an end only counts
    /// when it touches the `..`.
    private mutating func parseRange(lower: ValueSyntax?, startingAt at: SourceLocation) throws(Diagnostic) -> Value {
        let dots = current
        try advance()
        var upper: ValueSyntax?
        if dots.touches(current) {
            switch current.kind {
            case .integer(let number):
                guard number >= 0 else {
                    throw error("a range can't end at a negative number", at: current,
                                hint: "ranges count layers and steps from 0 upwards")
                }
                upper = .integer(number)
                try advance()
            case .variable(let name):
                upper = .variable(name)
                try advance()
            case .decimal, .identifier, .string:
                throw error("\(current.spelling) can't be the end of a range", at: current,
                            hint: "range ends are non-negative integers or variables, like `2..7`")
            default:
                break
            }
        }
        guard lower != nil || upper != nil else {
            throw error("a range needs at least one end", at: dots,
                        hint: "write ranges without spaces, like `2..7`, `3..` or `..5`")
        }
        if current.kind == .dotDot, current.start.offset == previousEnd.offset {
            throw error("a range has at most two ends", at: current,
                        hint: "write a single range like `1..3`, or a list like `1..2, 3`")
        }
        return Value(.range(lower: lower, upper: upper), at: at)
    }
}

private extension Token {
    var startsValue: Bool {
        switch kind {
        case .integer, .decimal, .string, .identifier, .variable, .dotDot: return true
        default: return false
        }
    }
}
