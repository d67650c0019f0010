import QLang

/// A value after variables are substituted: what commands receive.
public enum RuntimeValue: Sendable, Equatable, CustomStringConvertible {
    case integer(Int)
    case number(Double)
    case string(String)
    /// A bare identifier such as `resnet20` or `ternary`.
    case word(String)
    case boolean(Bool)
    case range(lower: Int?, upper: Int?)
    case list([RuntimeValue])

    public var description: String {
        switch self {
        case .integer(let value): return String(value)
        case .number(let value): return Self.format(value)
        case .string(let value): return value
        case .word(let value): return value
        case .boolean(let value): return value ? "true" : "false"
        case .range(let lower, let upper):
            return (lower.map(String.init) ?? "") + ".." + (upper.map(String.init) ?? "")
        case .list(let items): return items.map(\.description).joined(separator: ", ")
        }
    }

    /// The value written back as recipe syntax, so that a value can be re-read.
    public var syntax: ValueSyntax {
        switch self {
        case .integer(let value): return .integer(value)
        case .number(let value): return .decimal(value)
        case .string(let value): return .string(value)
        case .word(let value): return .identifier(value)
        case .boolean(let value): return .boolean(value)
        case .range(let lower, let upper): return .range(lower: lower.map { .integer($0) }, upper: upper.map { .integer($0) })
        case .list(let items): return .list(items.map(\.syntax))
        }
    }

    /// Numbers print without a trailing `.0` noise but keep full precision.
    static func format(_ value: Double) -> String {
        if value.isFinite, value == value.rounded(), abs(value) < 1e15 { return String(Int(value)) }
        return String(value)
    }

    public var kindName: String {
        switch self {
        case .integer: return "an integer"
        case .number: return "a number"
        case .string: return "a string"
        case .word: return "a word"
        case .boolean: return "a boolean"
        case .range: return "a range"
        case .list: return "a list"
        }
    }

    public var numericValue: Double? {
        switch self {
        case .integer(let value): return Double(value)
        case .number(let value): return value
        default: return nil
        }
    }
}
