import QLang

/// The one table of commands. Dispatch, argument checking, `help` and completion all read it.
public struct CommandRegistry: Sendable {
    public private(set) var specs: [CommandSpec] = []

    public init(_ specs: [CommandSpec] = []) {
        for spec in specs { register(spec) }
    }

    public mutating func register(_ spec: CommandSpec) {
        specs.removeAll { $0.words == spec.words }
        specs.append(spec)
    }

    /// Command words (the first word of each command), for suggestions and completion.
    public var commandWords: [String] {
        var seen = Set<String>()
        return specs.map { $0.words[0] }.filter { seen.insert($0).inserted }
    }

    public func specs(startingWith word: String) -> [CommandSpec] {
        specs.filter { $0.words[0] == word }
    }

    /// Finds the command a statement names and how many leading positional words its name used.
    public func resolve(_ name: String, positionalWords: [String], at location: SourceLocation,
                        wordLocations: [SourceLocation]) throws(Diagnostic) -> (CommandSpec, consumed: Int) {
        let family = specs(startingWith: name)
        guard !family.isEmpty else {
            let hint = Suggestion.closest(to: name, among: commandWords).map { "did you mean '\($0)'?" }
                ?? "type 'help' to list the commands"
            throw Diagnostic("unknown command '\(name)'", at: location, length: max(1, name.count), hint: hint)
        }
        // Longest match of the command's sub-words against the leading positional words.
        let matching = family.filter { spec in
            let tail = spec.words.dropFirst()
            return tail.count <= positionalWords.count && zip(tail, positionalWords).allSatisfy { $0 == $1 }
        }.sorted { $0.words.count > $1.words.count }
        if let best = matching.first {
            return (best, best.words.count - 1)
        }
        let subwords = family.compactMap { $0.words.count > 1 ? $0.words[1] : nil }
        let given = positionalWords.first
        let place = wordLocations.first ?? location
        var hint = "expected one of: " + subwords.map { "'\(name) \($0)'" }.joined(separator: ", ")
        if let given, let near = Suggestion.closest(to: given, among: subwords) {
            hint = "did you mean '\(name) \(near)'?"
        }
        let what = given.map { "'\(name)' has no form '\($0)'" } ?? "'\(name)' needs a second word"
        throw Diagnostic(what, at: place, length: max(1, given?.count ?? 1), hint: hint)
    }
}
