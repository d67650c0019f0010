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
    public var help: String

    public init(_ name: String, keyword: String? = nil, _ type: ParameterType, optional: Bool = false,
                variadic: Bool = false, help: String) {
        self.name = name
        self.keyword = keyword
        self.type = type
        self.isOptional = optional || variadic
        self.isVariadic = variadic
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
public struct Invocation: Sendable {
    public var spec: CommandSpec
    public var location: SourceLocation
    public var positionals: [String: RuntimeValue]
    public var options: [String: RuntimeValue]
    /// Options the recipe wrote itself, as opposed to defaults.
    public var explicitOptions: Set<String>
    /// The statement as written, for history and reports.
    public var text: String

    public func value(_ name: String) -> RuntimeValue? {
        positionals[name] ?? options[name]
    }

    public func int(_ name: String) -> Int? {
        switch value(name) {
        case .integer(let v)?: return v
        case .number(let v)? where v == v.rounded(): return Int(exactly: v)
        default: return nil
        }
    }

    public func double(_ name: String) -> Double? { value(name)?.numericValue }

    /// The values of a `.numbers` parameter.
    public func doubles(_ name: String) -> [Double]? {
        switch value(name) {
        case .list(let items)?: return items.compactMap(\.numericValue)
        case let single?: return single.numericValue.map { [$0] }
        case nil: return nil
        }
    }

    public func string(_ name: String) -> String? {
        switch value(name) {
        case .string(let v)?, .word(let v)?: return v
        case let other?: return other.description
        case nil: return nil
        }
    }

    public func bool(_ name: String) -> Bool? {
        if case .boolean(let v)? = value(name) { return v }
        return nil
    }

    public func isSet(_ name: String) -> Bool { explicitOptions.contains(name) || positionals[name] != nil }
}
