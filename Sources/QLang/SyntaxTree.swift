/// The syntax tree of a recipe. Locations travel with the nodes but never take part in
/// equality, so that parse -> print -> parse can be checked with `==`.

/// A position in a source text, counted from 1.
public struct SourceLocation: Sendable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public var column: Int

    public init(file: String, line: Int, column: Int) {
        self.file = file
        self.line = line
        self.column = column
    }

    public var description: String { "\(file):\(line):\(column)" }
}

/// A value as written in the recipe, before variables are substituted.
public indirect enum ValueSyntax: Hashable, Sendable {
    case integer(Int)
    case decimal(Double)
    case string(String)
    case identifier(String)
    case boolean(Bool)
    /// `$name`
    case variable(String)
    /// `3..`, `..5`, `2..7`; the endpoints are integers or variables.
    case range(lower: ValueSyntax?, upper: ValueSyntax?)
    /// `1, 4, 7..9`
    case list([ValueSyntax])
}

/// A value together with where it was written.
public struct Value: Sendable, Equatable {
    public var syntax: ValueSyntax
    public var location: SourceLocation

    public init(_ syntax: ValueSyntax, at location: SourceLocation) {
        self.syntax = syntax
        self.location = location
    }

    public static func == (lhs: Value, rhs: Value) -> Bool { lhs.syntax == rhs.syntax }
}

/// One argument of a command: a positional value or a `key=value` option.
public enum Argument: Sendable, Equatable {
    case positional(Value)
    case option(key: String, keyLocation: SourceLocation, value: Value)

    public static func == (lhs: Argument, rhs: Argument) -> Bool {
        switch (lhs, rhs) {
        case let (.positional(a), .positional(b)): return a == b
        case let (.option(k1, _, v1), .option(k2, _, v2)): return k1 == k2 && v1 == v2
        default: return false
        }
    }
}

/// `compensate dfmpc lambda=0.4`: a command word, then its arguments.
public struct CommandStatement: Sendable, Equatable {
    public var name: String
    public var location: SourceLocation
    public var arguments: [Argument]

    public init(name: String, location: SourceLocation, arguments: [Argument]) {
        self.name = name
        self.location = location
        self.arguments = arguments
    }

    public static func == (lhs: CommandStatement, rhs: CommandStatement) -> Bool {
        lhs.name == rhs.name && lhs.arguments == rhs.arguments
    }
}

/// `let lam = 0.4`
public struct LetStatement: Sendable, Equatable {
    public var name: String
    public var location: SourceLocation
    public var value: Value

    public init(name: String, location: SourceLocation, value: Value) {
        self.name = name
        self.location = location
        self.value = value
    }

    public static func == (lhs: LetStatement, rhs: LetStatement) -> Bool {
        lhs.name == rhs.name && lhs.value == rhs.value
    }
}

/// How a loop's iterations relate to each other.
public enum LoopKind: String, Sendable, CaseIterable {
    /// `for`: each iteration continues from the state the previous one left.
    case sequential = "for"
    /// `sweep`: each iteration starts from the state before the loop, so iterations are
    /// independent work items that `--shard i/N` can deal to separate processes.
    case sweep
}

/// `for lam in 0.1, 0.2 { ... }`, `for b in 2..8 { ... }` or `sweep lam in 0.1, 0.2 { ... }`
public struct ForStatement: Sendable, Equatable {
    public var kind: LoopKind
    public var variable: String
    public var location: SourceLocation
    /// A list or a bounded range.
    public var values: Value
    public var body: [Statement]

    public init(kind: LoopKind = .sequential, variable: String, location: SourceLocation, values: Value, body: [Statement]) {
        self.kind = kind
        self.variable = variable
        self.location = location
        self.values = values
        self.body = body
    }

    public static func == (lhs: ForStatement, rhs: ForStatement) -> Bool {
        lhs.kind == rhs.kind && lhs.variable == rhs.variable && lhs.values == rhs.values && lhs.body == rhs.body
    }
}

public enum Comparison: String, Sendable, CaseIterable {
    case less = "<"
    case lessOrEqual = "<="
    case equal = "=="
    case notEqual = "!="
    case greaterOrEqual = ">="
    case greater = ">"
}

/// `expect top1 >= 90.5` or `expect top1 == 91.73 +- 0.05`
public struct ExpectStatement: Sendable, Equatable {
    public var location: SourceLocation
    /// A named result such as `top1`, or a `$variable`.
    public var subject: Value
    public var comparison: Comparison
    public var expected: Value
    public var tolerance: Value?

    public init(location: SourceLocation, subject: Value, comparison: Comparison, expected: Value, tolerance: Value?) {
        self.location = location
        self.subject = subject
        self.comparison = comparison
        self.expected = expected
        self.tolerance = tolerance
    }

    public static func == (lhs: ExpectStatement, rhs: ExpectStatement) -> Bool {
        lhs.subject == rhs.subject && lhs.comparison == rhs.comparison
            && lhs.expected == rhs.expected && lhs.tolerance == rhs.tolerance
    }
}

public enum Statement: Sendable, Equatable {
    case command(CommandStatement)
    case assignment(LetStatement)
    case loop(ForStatement)
    case expectation(ExpectStatement)

    public var location: SourceLocation {
        switch self {
        case .command(let s): return s.location
        case .assignment(let s): return s.location
        case .loop(let s): return s.location
        case .expectation(let s): return s.location
        }
    }
}

/// A whole recipe.
public struct Program: Sendable, Equatable {
    public var statements: [Statement]

    public init(statements: [Statement]) {
        self.statements = statements
    }
}
