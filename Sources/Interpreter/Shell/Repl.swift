import CShims
import QLang

/// Where the REPL gets its lines: GNU readline on a terminal, a list of lines in tests.
public protocol LineReader: AnyObject {
    /// The next line without its newline, or nil at end of input (Ctrl-D).
    func readLine(prompt: String, freshPrompt: String) -> String?
    /// Whether Ctrl-C abandoned the input since the last line was read.
    func takeAbandoned() -> Bool
    func addToHistory(_ entry: String)
}

/// The read-eval-print loop: gathers lines until they form complete statements, runs them, and
/// on an error prints it and carries on.
public final class Repl {
    public let interpreter: Interpreter
    public let reader: LineReader
    private var entryCount = 0

    public init(interpreter: Interpreter, reader: LineReader) {
        self.interpreter = interpreter
        self.reader = reader
    }

    public var session: Session { interpreter.session }

    public func run() {
        var pending = ""
        while true {
            // SIGTERM during a command: leave instead of prompting again.
            if qsh_termination_requested() != 0 { return }
            let freshPrompt = session.promptLabel + "> "
            let prompt = pending.isEmpty ? freshPrompt : "...> "
            guard let line = reader.readLine(prompt: prompt, freshPrompt: freshPrompt) else {
                if !pending.isEmpty { evaluate(pending) }
                session.output.line()
                return
            }
            if reader.takeAbandoned() { pending = "" }
            if pending.isEmpty && line.allSatisfy(\.isWhitespace) { continue }
            pending += pending.isEmpty ? line : "\n" + line
            if Parser.needsMoreInput(pending) { continue }
            reader.addToHistory(pending)
            evaluate(pending)
            pending = ""
        }
    }

    private func evaluate(_ text: String) {
        entryCount += 1
        let source = SourceFile(name: "<input \(entryCount)>", text: text)
        session.sources[source.name] = source
        qsh_clear_interrupt()
        do {
            try interpreter.run(source)
        } catch {
            session.errors.line(render(error, session: session))
        }
    }
}

/// Renders a diagnostic with the line it points at, wherever that line came from.
public func render(_ diagnostic: Diagnostic, session: Session) -> String {
    diagnostic.rendered(source: session.sources[diagnostic.location.file])
}
