import CLineEditor
import CReadline
import Foundation
import Interpreter

/// The REPL's lines from GNU readline, with persistent history and registry-driven completion.
final class ReadlineReader: LineReader {
    private let historyPath: String

    init(session: Session) {
        let environment = ProcessInfo.processInfo.environment
        historyPath = environment["QSH_HISTFILE"] ?? (NSHomeDirectory() + "/.qsh_history")
        qsh_readline_configure("qsh")
        ReadlineReader.completer = Completer(registry: session.registry, valueWords: session.completionWords)
        qsh_readline_set_completer { text, state in
            ReadlineReader.nextCompletion(text: text, state: state)
        }
        using_history()
        read_history(historyPath)
    }

    nonisolated(unsafe) static var completer: Completer?
    nonisolated(unsafe) static var pending: [String] = []

    /// readline asks for candidates one at a time; state 0 starts a new word.
    static func nextCompletion(text: UnsafePointer<CChar>?, state: Int32) -> UnsafeMutablePointer<CChar>? {
        if state == 0 {
            let line = String(cString: qsh_readline_line_buffer())
            let point = Int(qsh_readline_point())
            let utf8 = Array(line.utf8.prefix(point))
            pending = completer?.completions(for: String(decoding: utf8, as: UTF8.self)) ?? []
        }
        guard !pending.isEmpty else { return nil }
        return strdup(pending.removeFirst())
    }

    func readLine(prompt: String, freshPrompt: String) -> String? {
        qsh_readline_set_fresh_prompt(freshPrompt)
        qsh_readline_set_prompt_open(1)
        defer { qsh_readline_set_prompt_open(0) }
        guard let raw = readline(prompt) else { return nil }
        defer { free(raw) }
        return String(cString: raw)
    }

    func takeAbandoned() -> Bool { qsh_readline_take_abandoned() != 0 }

    func addToHistory(_ entry: String) {
        add_history(entry)
        if append_history(1, historyPath) != 0 { write_history(historyPath) }
    }

    func saveHistory() {
        write_history(historyPath)
        history_truncate_file(historyPath, 1000)
    }
}
