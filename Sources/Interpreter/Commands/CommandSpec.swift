import QLang

/// What a parameter accepts. Checking, help text and completion all read this one description.
public enum ParameterType: Sendable {
    case integer(ClosedRange<Int>? = nil)
    case number(ClosedRange<Double>? = nil)
    /// One number or a comma list of them (`mean=0.485, 0.456, 0.406`).
    case numbers(ClosedRange<Double>? = nil)
    case boolean
    /// A quoted string or a bare word.
    case text
    /// A file path, quoted or bare.
    case path
    /// One of a fixed set of words.
    case choice([String])
    /// One of a fixed set of words, or an integer in the range (`low=ternary` or `low=3`).
    case choiceOrInteger([String], ClosedRange<Int>)
    /// A layer selector: `3`, `3..`, `..5`, `2..7`, a list of those, `all`, or a quoted name pattern.
    case layers
    /// Anything; the command interprets it.
    case any

    /// How the type reads in a usage line.
    public var placeholder: String {
        switch self {
        case .integer: return "N"
        case .number: return "X"
        case .numbers: return "X[,X...]"
        case .boolean: return "true|false"
        case .text: return "TEXT"
        case .path: return "\"FILE\""
        case .choice(let words): return words.joined(separator: "|")
        case .choiceOrInteger(let words, let range): return (words + ["\(range.lowerBound)..\(range.upperBound)"]).joined(separator: "|")
        case .layers: return "SEL"
        case .any: return "VALUE"
        }
    }

    /// One of an enumeration's cases, by raw value: the declaration and the type a command
    /// decodes are then the same list.
    public static func choice<Choice: CaseIterable & RawRepresentable>(_ type: Choice.Type) -> ParameterType
        where Choice.RawValue == String {
        .choice(type.allCases.map(\.rawValue))
    }

    /// Some of an enumeration's cases.
    public static func choice<Choice: RawRepresentable>(_ cases: [Choice]) -> ParameterType where Choice.RawValue == String {
        .choice(cases.map(\.rawValue))
    }

    /// Words worth offering when completing a value of this type.
    public var completions: [String] {
        switch self {
        case .boolean: return ["true", "false"]
        case .choice(let words), .choiceOrInteger(let words, _): return words
        case .layers: return ["all"]
        default: return []
        }
    }
}

/// A positional argument, optionally introduced by a keyword: `layer 3..`, `from "x.th"`.
public struct Positional: Sendable {
    public var name: String
    public var keyword: String?
    public var type: ParameterType
    public var isOptional: Bool
    /// Takes every remaining value, as a list (`print a b c`).
    public var isVariadic: Bool
    /// The value when the recipe leaves the argument out; a positional with a default is optional.
    public var defaultValue: RuntimeValue?
    public var help: String

    public init(_ name: String, keyword: String? = nil, _ type: ParameterType, optional: Bool = false,
                variadic: Bool = false, default defaultValue: RuntimeValue? = nil, help: String) {
        self.name = name
        self.keyword = keyword
        self.type = type
        self.isOptional = optional || variadic || defaultValue != nil
        self.isVariadic = variadic
        self.defaultValue = defaultValue
        self.help = help
    }

    var usage: String {
        let body = (keyword.map { $0 + " " } ?? "") + (keyword == nil ? name.uppercased() : type.placeholder)
            + (isVariadic ? " ..." : "")
        return isOptional ? "[\(body)]" : body
    }
}

/// A `key=value` option.
public struct OptionParameter: Sendable {
    public var name: String
    public var aliases: [String]
    public var type: ParameterType
    public var defaultValue: RuntimeValue?
    public var help: String

    public init(_ name: String, _ type: ParameterType, default defaultValue: RuntimeValue? = nil,
                aliases: [String] = [], help: String) {
        self.name = name
        self.aliases = aliases
        self.type = type
        self.defaultValue = defaultValue
        self.help = help
    }
}

public enum CommandGroup: String, Sendable, CaseIterable {
    case session = "Session"
    case model = "Model"
    case quantization = "Quantization"
    case analysis = "Analysis"
    case language = "Language"
}

/// Everything qsh knows about a command: its words, parameters, help and what it does.
public struct CommandSpec: Sendable {
    /// `["compensate", "dfmpc"]`: the command word and any fixed sub-words.
    public var words: [String]
    public var group: CommandGroup
    public var summary: String
    public var help: String
    public var positionals: [Positional]
    public var options: [OptionParameter]
    public var examples: [String]
    public var run: @Sendable (Invocation, Session) throws -> Void

    public init(_ words: [String], group: CommandGroup, summary: String, help: String = "",
                positionals: [Positional] = [], options: [OptionParameter] = [], examples: [String] = [],
                run: @escaping @Sendable (Invocation, Session) throws -> Void) {
        self.words = words
        self.group = group
        self.summary = summary
        self.help = help
        self.positionals = positionals
        self.options = options
        self.examples = examples
        self.run = run
    }

    public var name: String { words.joined(separator: " ") }

    public var usage: String {
        var parts = [name]
        parts += positionals.map(\.usage)
        parts += options.map { "[\($0.name)=\($0.type.placeholder)]" }
        return parts.joined(separator: " ")
    }

    func option(named key: String) -> OptionParameter? {
        options.first { $0.name == key || $0.aliases.contains(key) }
    }
}

/// A command with its arguments checked and converted, ready to run.
///
/// Every declared parameter that has a default holds a value here, so commands read those with
/// the non-optional accessors (`int`, `double`, `string`, `bool`, `choice`); the `optional...`
/// accessors are for parameters declared without a default, where absence means something.
public struct Invocation: Sendable {
    public var spec: CommandSpec
    public var location: SourceLocation
    public var positionals: [String: RuntimeValue]
    public var options: [String: RuntimeValue]
    /// Options the recipe wrote itself, as opposed to defaults.
    public var explicitOptions: Set<String>
    /// Positionals the recipe wrote itself, as opposed to defaults.
    public var explicitPositionals: Set<String> = []
    /// The statement as written, for history and reports.
    public var text: String

    public func value(_ name: String) -> RuntimeValue? {
        positionals[name] ?? options[name]
    }

    /// Whether the recipe wrote the parameter (a default does not count).
    public func isSet(_ name: String) -> Bool { explicitOptions.contains(name) || explicitPositionals.contains(name) }

    // MARK: Parameters that always have a value: required, or declared with a default

    /// The value of a parameter that always has one. A parameter that has none was declared
    /// optional without a default, which is a mistake in the declaration, not in the recipe.
    public func required(_ name: String) throws -> RuntimeValue {
        guard let value = value(name) else {
            throw CommandError("'\(spec.name)' has no value for '\(name)'",
                               hint: "the declaration of '\(spec.name)' needs a default for '\(name)'")
        }
        return value
    }

    public func int(_ name: String) throws -> Int {
        let value = try required(name)
        guard let integer = Self.integer(value) else { throw mismatch(name, value, "an integer") }
        return integer
    }

    public func double(_ name: String) throws -> Double {
        let value = try required(name)
        guard let number = value.numericValue else { throw mismatch(name, value, "a number") }
        return number
    }

    public func string(_ name: String) throws -> String { Self.text(try required(name)) }

    public func bool(_ name: String) throws -> Bool {
        let value = try required(name)
        guard case .boolean(let flag) = value else { throw mismatch(name, value, "true or false") }
        return flag
    }

    /// A `.choice` parameter as the enumeration it names.
    public func choice<Choice: RawRepresentable>(_ name: String, as type: Choice.Type) throws -> Choice
        where Choice.RawValue == String {
        try Self.decode(name, try required(name), as: type, in: spec)
    }

    // MARK: Parameters declared without a default

    public func optionalInt(_ name: String) -> Int? { value(name).flatMap(Self.integer) }

    public func optionalString(_ name: String) -> String? { value(name).map(Self.text) }

    public func optionalBool(_ name: String) -> Bool? {
        if case .boolean(let flag)? = value(name) { return flag }
        return nil
    }

    /// The values of a `.numbers` parameter.
    public func optionalDoubles(_ name: String) -> [Double]? {
        switch value(name) {
        case .list(let items)?: return items.compactMap(\.numericValue)
        case let single?: return single.numericValue.map { [$0] }
        case nil: return nil
        }
    }

    public func optionalChoice<Choice: RawRepresentable>(_ name: String, as type: Choice.Type) throws -> Choice?
        where Choice.RawValue == String {
        try value(name).map { value in try Self.decode(name, value, as: type, in: spec) }
    }

    // MARK: Conversions

    static func integer(_ value: RuntimeValue) -> Int? {
        switch value {
        case .integer(let v): return v
        case .number(let v) where v == v.rounded(): return Int(exactly: v)
        default: return nil
        }
    }

    static func text(_ value: RuntimeValue) -> String {
        switch value {
        case .string(let v), .word(let v): return v
        default: return value.description
        }
    }

    static func decode<Choice: RawRepresentable>(_ name: String, _ value: RuntimeValue, as type: Choice.Type,
                                                 in spec: CommandSpec) throws -> Choice where Choice.RawValue == String {
        if let choice = Choice(rawValue: text(value)) { return choice }
        // The binder accepts only declared words, so this is a declaration that lists a word the type lacks.
        let words: [String]
        switch spec.option(named: name)?.type ?? spec.positionals.first(where: { $0.name == name })?.type {
        case .choice(let declared)?, .choiceOrInteger(let declared, _)?: words = declared
        default: words = []
        }
        throw CommandError("\(name)=\(value) is not one of \(words.joined(separator: ", "))",
                           hint: "'\(spec.name)' declares a \(name) that it does not handle")
    }

    private func mismatch(_ name: String, _ value: RuntimeValue, _ expected: String) -> CommandError {
        CommandError("'\(spec.name)' expects \(expected) for '\(name)', got \(value.kindName) '\(value)'",
                     hint: "usage: \(spec.usage)")
    }
}

extension RuntimeValue {
    /// An enumeration's case as a declared default: `default: .choice(CalibrationMethod.minmax)`.
    public static func choice<Choice: RawRepresentable>(_ value: Choice) -> RuntimeValue where Choice.RawValue == String {
        .word(value.rawValue)
    }
}
