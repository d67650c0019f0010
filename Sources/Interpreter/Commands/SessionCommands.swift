import Foundation
import QLang
import QuantOps

/// Commands about the session itself: help, output, settings, sourcing and history.
enum SessionCommands {
    static var all: [CommandSpec] {
        [help, printValues, echo, set, source, historySave, historyShow]
    }

    static let help = CommandSpec(
        ["help"], group: .session, summary: "List the commands, or explain one",
        help: "Without an argument, lists every command with a one-line summary. With a command name, shows its usage, options and examples.",
        positionals: [
            Positional("command", .any, optional: true, help: "the command to explain"),
            Positional("form", .any, optional: true, help: "its second word, e.g. 'help compensate dfmpc'"),
        ],
        examples: ["help", "help quantize layer"]
    ) { invocation, session in
        guard let topic = invocation.optionalString("command") else {
            session.output.line(HelpText.overview(session.registry))
            return
        }
        let words = [topic] + (invocation.optionalString("form").map { [$0] } ?? [])
        session.output.line(try HelpText.detail(words, registry: session.registry))
    }

    static let printValues = CommandSpec(
        ["print"], group: .session, summary: "Print values, variables and results",
        help: "Prints its arguments separated by spaces. Inside strings, $name and ${name} are replaced by variables and results such as top1.",
        positionals: [Positional("values", .any, variadic: true, help: "what to print")],
        examples: ["print \"lambda = $lam, top-1 = $top1\"", "print $lam top1"]
    ) { invocation, session in
        session.output.line(render(invocation.value("values"), session: session))
    }

    static var echo: CommandSpec {
        var spec = printValues
        spec.words = ["echo"]
        spec.summary = "Same as print"
        return spec
    }

    static func render(_ value: RuntimeValue?, session: Session) -> String {
        guard case .list(let items)? = value else { return "" }
        return items.map { item in
            switch item {
            case .string(let text): return text
            case .word(let name):
                return session.values[name].map(Interpreter.formatResult) ?? name
            default: return item.description
            }
        }.joined(separator: " ")
    }

    /// Replaces `$name` and `${name}` with variables or named results; unknown names stay as written.
    static func interpolate(_ text: String, session: Session) -> String {
        var result = ""
        var index = text.startIndex
        while index < text.endIndex {
            let character = text[index]
            guard character == "$" else {
                result.append(character)
                index = text.index(after: index)
                continue
            }
            var cursor = text.index(after: index)
            let braced = cursor < text.endIndex && text[cursor] == "{"
            if braced { cursor = text.index(after: cursor) }
            let nameStart = cursor
            while cursor < text.endIndex, text[cursor].isLetter || text[cursor].isNumber || text[cursor] == "_" {
                cursor = text.index(after: cursor)
            }
            let name = String(text[nameStart..<cursor])
            if braced, cursor < text.endIndex, text[cursor] == "}" { cursor = text.index(after: cursor) }
            if let value = session.variables[name] {
                result += value.description
            } else if let value = session.values[name] {
                result += Interpreter.formatResult(value)
            } else {
                result += String(text[index..<cursor])
            }
            index = cursor == index ? text.index(after: index) : cursor
        }
        return result
    }

    static let set = CommandSpec(
        ["set"], group: .session, summary: "Change session settings (threads, models, data, ...)",
        help: "Settings last for the session. 'set' alone shows them.",
        options: [
            OptionParameter("threads", .integer(1...1024), help: "threads for inference (default: all cores)"),
            OptionParameter("models", .path, help: "directory searched first for model checkpoints"),
            OptionParameter("data", .path, help: "directory searched first for data sets"),
            OptionParameter("download", .boolean, help: "whether a missing model or data set may be downloaded"),
            OptionParameter("progress", .boolean, help: "whether progress bars are drawn on a terminal"),
            OptionParameter("engine", .choice(Arithmetic.self),
                            help: "how 'eval' computes: float, or int8 (integer convolutions where the model is quantized; see 'layers')"),
        ],
        examples: ["set threads=2", "set models=\"/data/checkpoints\"", "set engine=int8"]
    ) { invocation, session in
        if let threads = invocation.optionalInt("threads") {
            session.settings.threads = threads
            EngineSettings.threads = threads
        }
        if let models = invocation.optionalString("models") { session.settings.modelsDirectory = models }
        if let data = invocation.optionalString("data") { session.settings.dataDirectory = data }
        if let download = invocation.optionalBool("download") { session.settings.allowDownload = download }
        if let progress = invocation.optionalBool("progress") { session.settings.progress = progress }
        if let engine = try invocation.optionalChoice("engine", as: Arithmetic.self) { session.settings.engine = engine }
        if invocation.explicitOptions.isEmpty {
            let settings = session.settings
            session.output.line("threads=\(settings.threads)")
            session.output.line("models=\"\(settings.modelsDirectory ?? "")\"")
            session.output.line("data=\"\(settings.dataDirectory ?? "")\"")
            session.output.line("download=\(settings.allowDownload)")
            session.output.line("progress=\(settings.progress)")
            session.output.line("engine=\(settings.engine.rawValue)")
        }
    }

    static let source = CommandSpec(
        ["source"], group: .session, summary: "Run the statements of a recipe file in this session",
        positionals: [Positional("file", .path, help: "the .qs file to run")],
        examples: ["source \"examples/quickstart.qs\""]
    ) { invocation, session in
        let path = try invocation.string("file")
        let url = URL(fileURLWithPath: path)
        guard !session.sourceStack.contains(url.standardizedFileURL.path) else {
            throw CommandError("'\(path)' sources itself", hint: "remove the recursive 'source' line")
        }
        let text: String
        do {
            text = try String(contentsOf: url, encoding: .utf8)
        } catch {
            throw CommandError("cannot read '\(path)'", hint: "check the path; it is relative to \(FileManager.default.currentDirectoryPath)")
        }
        let file = SourceFile(name: path, text: text)
        session.sources[path] = file
        session.sourceStack.append(url.standardizedFileURL.path)
        defer { session.sourceStack.removeLast() }
        let program = try Parser.parse(file)
        let interpreter = Interpreter(session: session)
        for statement in program.statements { try interpreter.execute(statement) }
    }

    static let historySave = CommandSpec(
        ["history", "save"], group: .session, summary: "Save the statements run so far as a recipe",
        help: "Writes every statement that ran successfully in this session, pretty-printed, so that the file re-runs the session.",
        positionals: [Positional("file", .path, help: "where to write the recipe")],
        examples: ["history save \"session.qs\""]
    ) { invocation, session in
        let path = try invocation.string("file")
        let text = "# qsh session, saved \(ISO8601DateFormatter().string(from: Date()))\n"
            + session.history.joined(separator: "\n") + "\n"
        do {
            try AtomicFile.write(Data(text.utf8), to: URL(fileURLWithPath: path))
        } catch {
            throw CommandError("\(error)", hint: "check that the directory exists and is writable")
        }
        session.output.line("saved \(session.history.count) statements to \(path)")
    }

    static let historyShow = CommandSpec(
        ["history"], group: .session, summary: "Show the statements run so far"
    ) { _, session in
        for (number, line) in session.history.enumerated() {
            session.output.line(String(format: "%4d  ", number + 1) + line)
        }
    }
}
