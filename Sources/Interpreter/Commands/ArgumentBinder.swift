import QLang

/// An argument after variable substitution, still carrying where it was written.
struct PlacedValue {
    var value: RuntimeValue
    var location: SourceLocation
}

/// Matches a statement's arguments against a command's declaration. Everything is checked here,
/// before the command runs, so that a typo never leaves the model half-changed.
struct ArgumentBinder {
    var spec: CommandSpec
    var statementLocation: SourceLocation

    func bind(positionals givenPositionals: [PlacedValue], options givenOptions: [(key: String, keyLocation: SourceLocation, value: PlacedValue)],
              text: String) throws(Diagnostic) -> Invocation {
        var positionals: [String: RuntimeValue] = [:]
        var remaining = givenPositionals[...]

        for parameter in spec.positionals {
            if let keyword = parameter.keyword {
                guard let next = remaining.first, case .word(let word) = next.value, word == keyword else {
                    if parameter.isOptional { continue }
                    let place = remaining.first?.location ?? statementLocation
                    throw Diagnostic("'\(spec.name)' expects '\(keyword) \(parameter.type.placeholder)' here", at: place,
                                     hint: "usage: \(spec.usage)")
                }
                remaining = remaining.dropFirst()
                guard let value = remaining.first else {
                    throw Diagnostic("'\(keyword)' needs a value after it", at: next.location, length: keyword.count,
                                     hint: "usage: \(spec.usage)")
                }
                remaining = remaining.dropFirst()
                positionals[parameter.name] = try convert(value, to: parameter.type, named: parameter.name)
            } else if parameter.isVariadic {
                var items: [RuntimeValue] = []
                while let value = remaining.first {
                    items.append(try convert(value, to: parameter.type, named: parameter.name))
                    remaining = remaining.dropFirst()
                }
                positionals[parameter.name] = .list(items)
            } else {
                guard let value = remaining.first else {
                    if parameter.isOptional { continue }
                    throw Diagnostic("'\(spec.name)' needs \(parameter.name.uppercased()): \(parameter.help)",
                                     at: statementLocation, length: spec.words[0].count, hint: "usage: \(spec.usage)")
                }
                // An optional positional does not swallow the keyword of the next parameter.
                if parameter.isOptional, case .word(let word) = value.value,
                   spec.positionals.contains(where: { $0.keyword == word }) {
                    continue
                }
                remaining = remaining.dropFirst()
                positionals[parameter.name] = try convert(value, to: parameter.type, named: parameter.name)
            }
        }
        let explicitPositionals = Set(positionals.keys)
        for parameter in spec.positionals where positionals[parameter.name] == nil {
            if let value = parameter.defaultValue { positionals[parameter.name] = try declared(value, of: parameter.name, type: parameter.type) }
        }
        if let extra = remaining.first {
            throw Diagnostic("unexpected argument '\(extra.value)' for '\(spec.name)'", at: extra.location,
                             length: max(1, extra.value.description.count), hint: "usage: \(spec.usage)")
        }

        var options: [String: RuntimeValue] = [:]
        var explicit = Set<String>()
        for given in givenOptions {
            guard let option = spec.option(named: given.key) else {
                let names = spec.options.flatMap { [$0.name] + $0.aliases }
                let hint: String
                if let near = Suggestion.closest(to: given.key, among: names) {
                    hint = "did you mean '\(near)'?"
                } else if names.isEmpty {
                    hint = "'\(spec.name)' takes no options"
                } else {
                    hint = "'\(spec.name)' takes: " + spec.options.map(\.name).joined(separator: ", ")
                }
                throw Diagnostic("unknown option '\(given.key)' for '\(spec.name)'", at: given.keyLocation,
                                 length: max(1, given.key.count), hint: hint)
            }
            if explicit.contains(option.name) {
                throw Diagnostic("option '\(option.name)' is given twice", at: given.keyLocation,
                                 length: max(1, given.key.count), hint: "keep one of them")
            }
            options[option.name] = try convert(given.value, to: option.type, named: option.name)
            explicit.insert(option.name)
        }
        for option in spec.options where options[option.name] == nil {
            if let value = option.defaultValue { options[option.name] = try declared(value, of: option.name, type: option.type) }
        }
        return Invocation(spec: spec, location: statementLocation, positionals: positionals, options: options,
                          explicitOptions: explicit, explicitPositionals: explicitPositionals, text: text)
    }

    /// A declared default goes through the same checks as a written value, so that a default
    /// outside its type (a word its choices lack, a number out of range) fails every statement
    /// of the command, and with it the test that binds every help example.
    private func declared(_ value: RuntimeValue, of name: String, type: ParameterType) throws(Diagnostic) -> RuntimeValue {
        try convert(PlacedValue(value: value, location: statementLocation), to: type, named: name + " (its declared default)")
    }

    func convert(_ placed: PlacedValue, to type: ParameterType, named name: String) throws(Diagnostic) -> RuntimeValue {
        let value = placed.value
        func mismatch(_ expected: String, hint: String? = nil) -> Diagnostic {
            Diagnostic("\(name) expects \(expected), got \(value.kindName) '\(value)'", at: placed.location,
                       length: max(1, value.description.count), hint: hint ?? "usage: \(spec.usage)")
        }
        switch type {
        case .any:
            return value
        case .integer(let range):
            guard let number = value.numericValue, number == number.rounded(), let integer = Int(exactly: number) else {
                throw mismatch("an integer")
            }
            if let range, !range.contains(integer) {
                throw mismatch("an integer in \(range.lowerBound)...\(range.upperBound)")
            }
            return .integer(integer)
        case .number(let range):
            guard let number = value.numericValue, number.isFinite else { throw mismatch("a number") }
            if let range, !range.contains(number) {
                throw mismatch("a number in \(RuntimeValue.format(range.lowerBound))...\(RuntimeValue.format(range.upperBound))")
            }
            return .number(number)
        case .numbers(let range):
            let items: [RuntimeValue]
            if case .list(let list) = value { items = list } else { items = [value] }
            let numbers = items.compactMap(\.numericValue)
            guard numbers.count == items.count, numbers.allSatisfy(\.isFinite) else { throw mismatch("a number or a comma list of numbers") }
            if let range, let outside = numbers.first(where: { !range.contains($0) }) {
                throw mismatch("numbers in \(RuntimeValue.format(range.lowerBound))...\(RuntimeValue.format(range.upperBound)) (\(RuntimeValue.format(outside)) is not)")
            }
            return .list(numbers.map { .number($0) })
        case .boolean:
            switch value {
            case .boolean: return value
            case .word("on"), .word("yes"): return .boolean(true)
            case .word("off"), .word("no"): return .boolean(false)
            default: throw mismatch("true or false")
            }
        case .text, .path:
            switch value {
            case .string, .word: return value
            case .integer, .number: return .string(value.description)
            default: throw mismatch(type.placeholder == "TEXT" ? "text" : "a file path in quotes")
            }
        case .choice(let words):
            return try choose(value, among: words, integers: nil, mismatch: mismatch)
        case .choiceOrInteger(let words, let range):
            return try choose(value, among: words, integers: range, mismatch: mismatch)
        case .layers:
            try checkSelector(value, mismatch: mismatch)
            return value
        }
    }

    private func choose(_ value: RuntimeValue, among words: [String], integers: ClosedRange<Int>?,
                        mismatch: (String, String?) -> Diagnostic) throws(Diagnostic) -> RuntimeValue {
        let expected = "one of " + words.joined(separator: ", ") + (integers.map { " or an integer in \($0.lowerBound)...\($0.upperBound)" } ?? "")
        switch value {
        case .word(let word), .string(let word):
            if words.contains(word) { return .word(word) }
            let hint = Suggestion.closest(to: word, among: words).map { "did you mean '\($0)'?" }
            throw mismatch(expected, hint)
        case .integer(let integer):
            if let integers, integers.contains(integer) { return value }
            throw mismatch(expected, nil)
        default:
            throw mismatch(expected, nil)
        }
    }

    private func checkSelector(_ value: RuntimeValue, mismatch: (String, String?) -> Diagnostic) throws(Diagnostic) {
        switch value {
        case .integer, .range, .string, .word("all"):
            return
        case .list(let items):
            for item in items { try checkSelector(item, mismatch: mismatch) }
        default:
            throw mismatch("a layer selector such as 3, 3.., ..5, 2..7, 1, 4, 7..9, all or \"layer2.*\"", nil)
        }
    }
}
