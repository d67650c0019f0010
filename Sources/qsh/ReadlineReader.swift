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
    /// The file is rewritten whole or not at all: a copy beside it takes the new lines and the
    /// truncation, is flushed, and is renamed over it, so a full disk or a kill mid-write never
    /// loses the old history. Failing to write history never fails the session; it says so once.
    func saveHistory() {
        guard newEntries > 0, historySize > 0 else { return }
        let directory = (historyPath as NSString).deletingLastPathComponent
        let name = (historyPath as NSString).lastPathComponent
        let temporary = ((directory.isEmpty ? "." : directory) as NSString)
            .appendingPathComponent(".\(name).\(getpid()).partial")
        func fail(_ reason: String) {
            unlink(temporary)
            FileHandle.standardError.write(Data("qsh: could not write the history file \(historyPath): \(reason)\n".utf8))
        }
        unlink(temporary)
        // Start from the file as it is now, so that lines other sessions appended are kept.
        let descriptor = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { return fail(String(cString: strerror(errno))) }
        if let old = FileManager.default.contents(atPath: historyPath), !old.isEmpty {
            var failure: Int32 = 0
            old.withUnsafeBytes { bytes in
                var offset = 0
                while offset < bytes.count {
                    let written = write(descriptor, bytes.baseAddress! + offset, bytes.count - offset)
                    if written < 0 {
                        if errno == EINTR { continue }
                        failure = errno
                        return
                    }
                    offset += written
                }
            }
            if failure != 0 {
                close(descriptor)
                return fail(String(cString: strerror(failure)))
            }
        }
        close(descriptor)
        let appended = append_history(Int32(clamping: min(newEntries, historySize)), temporary)
        if appended != 0 { return fail(String(cString: strerror(appended))) }
        let truncated = history_truncate_file(temporary, Int32(clamping: historySize))
        if truncated != 0 { return fail(String(cString: strerror(truncated))) }
        let flush = open(temporary, O_RDONLY | O_CLOEXEC)
        if flush < 0 || fsync(flush) != 0 {
            let reason = String(cString: strerror(errno))
            if flush >= 0 { close(flush) }
            return fail(reason)
        }
        close(flush)
        guard rename(temporary, historyPath) == 0 else { return fail(String(cString: strerror(errno))) }
        newEntries = 0
    }
}
