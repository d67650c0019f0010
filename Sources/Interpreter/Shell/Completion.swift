/// Tab completion for the REPL, from the command registry's declarations.
public struct Completer: Sendable {
    public var registry: CommandRegistry
    /// Extra words for a command's first positional value, e.g. model names for `load`.
    public var valueWords: [String: [String]]

    public init(registry: CommandRegistry, valueWords: [String: [String]] = [:]) {
        self.registry = registry
        self.valueWords = valueWords
    }

    static let keywords = ["let", "for", "sweep", "expect"]

    /// Candidates for the word that ends at the end of `line` (the text before the cursor).
    public func completions(for line: String) -> [String] {
        // Only the statement being typed matters.
        let statement = String(line.split(separator: ";", omittingEmptySubsequences: false).last ?? "")
            .split(separator: "{", omittingEmptySubsequences: false).last.map(String.init) ?? ""
        let breakCharacters: Set<Character> = [" ", "\t", "=", ",", "}"]
        var prefixStart = statement.endIndex
        while prefixStart > statement.startIndex, !breakCharacters.contains(statement[statement.index(before: prefixStart)]) {
            prefixStart = statement.index(before: prefixStart)
        }
        let prefix = String(statement[prefixStart...])
        let before = statement[..<prefixStart]
        let words = before.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)

        let candidates: [String]
        if words.isEmpty {
            candidates = registry.commandWords + Self.keywords
        } else if before.last == "=" {
            let key = words.last.map { String($0.dropLast()) } ?? ""
            candidates = optionValues(command: words, key: key)
        } else {
            candidates = argumentWords(words)
        }
        var seen = Set<String>()
        return candidates.filter { $0.hasPrefix(prefix) && seen.insert($0).inserted }.sorted()
    }

    private func family(for words: [String]) -> [CommandSpec] {
        registry.specs(startingWith: words[0])
    }

    /// The command the words typed so far name: the longest sub-word match.
    private func command(for words: [String]) -> CommandSpec? {
        family(for: words)
            .filter { spec in spec.words.count <= words.count && Array(words.prefix(spec.words.count)) == spec.words }
            .max { $0.words.count < $1.words.count }
    }

    private func argumentWords(_ words: [String]) -> [String] {
        if words[0] == "help" {
            return words.count == 1 ? registry.commandWords
                : registry.specs(startingWith: words[1]).compactMap { $0.words.count > 1 ? $0.words[1] : nil }
        }
        var result: [String] = []
        if words.count == 1 {
            result += family(for: words).compactMap { $0.words.count > 1 ? $0.words[1] : nil }
            result += valueWords[words[0]] ?? []
        }
        guard let spec = command(for: words) else { return result }
        let previous = words.last ?? ""
        if let positional = spec.positionals.first(where: { $0.keyword == previous }) {
            return result + positional.type.completions
        }
        result += spec.positionals.compactMap(\.keyword)
        for positional in spec.positionals where positional.keyword == nil {
            result += positional.type.completions
        }
        if words.count == spec.words.count { result += valueWords[spec.name] ?? [] }
        result += spec.options.map { $0.name + "=" }
        return result
    }

    private func optionValues(command words: [String], key: String) -> [String] {
        let commandWords = Array(words.dropLast())
        guard !commandWords.isEmpty, let spec = command(for: commandWords), let option = spec.option(named: key) else { return [] }
        return option.type.completions
    }
}
