import QLang

/// `help` and `help COMMAND`, written from the registry's declarations.
enum HelpText {
    static func overview(_ registry: CommandRegistry) -> String {
        var lines = ["qsh commands (type 'help COMMAND' for details):"]
        let width = registry.specs.map(\.name.count).max() ?? 0
        for group in CommandGroup.allCases {
            let specs = registry.specs.filter { $0.group == group }
            guard !specs.isEmpty else { continue }
            lines.append("")
            lines.append(group.rawValue)
            for spec in specs {
                lines.append("  " + spec.name.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + spec.summary)
            }
        }
        lines.append("")
        lines.append("Language: let NAME = VALUE; for NAME in VALUES { ... }; expect NAME >= VALUE [+- TOL]; # comment")
        return lines.joined(separator: "\n")
    }

    static func detail(_ words: [String], registry: CommandRegistry) throws -> String {
        let family = registry.specs(startingWith: words[0])
        guard !family.isEmpty else {
            let hint = Suggestion.closest(to: words[0], among: registry.commandWords).map { "did you mean '\($0)'?" }
                ?? "type 'help' to list the commands"
            throw CommandError("no command named '\(words[0])'", hint: hint)
        }
        let exact = family.filter { $0.words == words }
        let chosen = exact.isEmpty ? family : exact
        return chosen.map(describe).joined(separator: "\n\n")
    }

    static func describe(_ spec: CommandSpec) -> String {
        var lines = ["usage: " + spec.usage, "", spec.summary + "."]
        if !spec.help.isEmpty { lines += ["", spec.help] }
        let arguments = spec.positionals.map { positional in
            ((positional.keyword.map { $0 + " " } ?? "") + positional.type.placeholder,
             positional.help + (positional.defaultValue.map { " (default \($0))" } ?? ""))
        }
        let options = spec.options.map { option in
            (option.name + "=" + option.type.placeholder + (option.aliases.isEmpty ? "" : " (also " + option.aliases.joined(separator: ", ") + ")"),
             option.help + (option.defaultValue.map { " (default \($0))" } ?? ""))
        }
        let width = (arguments + options).map(\.0.count).max() ?? 0
        for (title, rows) in [("Arguments:", arguments), ("Options:", options)] where !rows.isEmpty {
            lines += ["", title]
            lines += rows.map { "  " + $0.0.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + $0.1 }
        }
        if !spec.examples.isEmpty {
            lines += ["", "Examples:"] + spec.examples.map { "  " + $0 }
        }
        return lines.joined(separator: "\n")
    }
}
