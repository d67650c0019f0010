import CLineEditor
import CReadline
import Foundation
import Interpreter

/// The REPL's lines from GNU readline, with persistent history and registry-driven completion.
///
/// History behaves like bash's: `$HOME/.qsh_history` unless `QSH_HISTFILE` names another file,
/// at most `QSH_HISTSIZE` lines (default 1000). The lines of this session are appended at exit
/// and the file is then truncated to the limit, so two REPLs open at once keep each other's lines.
final class ReadlineReader: LineReader {
    static let defaultHistorySize = 1000

    private let historyPath: String
    private let historySize: Int
    /// Lines added since the file was read: what exit appends.
    private var newEntries = 0

    static func historyPath(environment: [String: String]) -> String {
        if let path = environment["QSH_HISTFILE"], !path.isEmpty { return path }
        // $HOME first, as a shell does; the passwd entry only when HOME is unset.
        let home = environment["HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? NSHomeDirectory()
        return (home as NSString).appendingPathComponent(".qsh_history")
    }

    static func historySize(environment: [String: String]) -> Int {
        guard let text = environment["QSH_HISTSIZE"], let size = Int(text), size >= 0 else { return defaultHistorySize }
        return size
    }

    init(session: Session) {
        let environment = ProcessInfo.processInfo.environment
        historyPath = Self.historyPath(environment: environment)
        historySize = Self.historySize(environment: environment)
        qsh_readline_configure("qsh")
        ReadlineReader.completer = Completer(registry: session.registry, valueWords: session.completionWords)
        qsh_readline_set_completer { text, state in
            ReadlineReader.nextCompletion(text: text, state: state)
        }
        using_history()
        stifle_history(Int32(clamping: historySize))
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
        newEntries += 1
    }

    /// Appends this session's lines and truncates the file to the limit, as bash does at exit.
    /// Failing to write history never fails the session; it says so once.
    func saveHistory() {
        guard newEntries > 0, historySize > 0 else { return }
        if !FileManager.default.fileExists(atPath: historyPath) {
            // append_history needs the file to exist; create it readable by its owner only.
            let descriptor = open(historyPath, O_WRONLY | O_CREAT | O_APPEND, 0o600)
            if descriptor >= 0 { close(descriptor) }
        }
        let appended = append_history(Int32(clamping: min(newEntries, historySize)), historyPath)
        if appended != 0 {
            FileHandle.standardError.write(Data("qsh: could not write the history file \(historyPath): \(String(cString: strerror(appended)))\n".utf8))
            return
        }
        history_truncate_file(historyPath, Int32(clamping: historySize))
        newEntries = 0
    }
}
