import Foundation
#if canImport(Glibc)
import Glibc
#endif
import XCTest

/// The REPL under a real pseudo-terminal (tmux): typing, completion, errors, Ctrl-C and Ctrl-D.
final class ReplTerminalTests: XCTestCase {
    var sessionName = ""
    var historyFile: URL!

    override func setUpWithError() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/tmux") else {
            throw XCTSkip("tmux is not installed (scripts/install-deps.sh installs it)")
        }
        sessionName = "qsh-test-\(UUID().uuidString.prefix(8))"
        historyFile = FileManager.default.temporaryDirectory.appendingPathComponent("\(sessionName)-history")
    }

    override func tearDown() {
        for name in [sessionName, sessionName + "-a", sessionName + "-b"] {
            _ = try? tmux(["kill-session", "-t", name])
        }
        try? FileManager.default.removeItem(at: historyFile)
    }

    /// Runs a tmux command and waits for it with waitpid. Foundation's Process is not used: the
    /// tmux server that the first command forks keeps descriptors that Process watches to see
    /// its child exit, so waiting through Process can hang. Output goes through a file.
    @discardableResult
    func tmux(_ arguments: [String]) throws -> String {
        let outputFile = FileManager.default.temporaryDirectory.appendingPathComponent("\(sessionName)-\(UUID()).out").path
        defer { try? FileManager.default.removeItem(atPath: outputFile) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, outputFile, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        let argv: [UnsafeMutablePointer<CChar>?] = (["tmux"] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        guard posix_spawn(&pid, "/usr/bin/tmux", &actions, nil, argv, environ) == 0 else {
            throw Timeout(description: "could not start tmux")
        }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
        return (try? String(contentsOfFile: outputFile, encoding: .utf8)) ?? ""
    }

    func screen(_ session: String? = nil) throws -> String { try tmux(["capture-pane", "-p", "-t", session ?? sessionName]) }

    struct Timeout: Error, CustomStringConvertible {
        var description: String
    }

    /// Polls the screen until `predicate` holds, for at most `seconds`; a timeout ends the test.
    func waitFor(_ description: String, in session: String? = nil, seconds: Double = 20,
                 _ predicate: (String) -> Bool) throws -> String {
        let deadline = Date().addingTimeInterval(seconds)
        var last = ""
        while Date() < deadline {
            last = try screen(session)
            if predicate(last) { return last }
            Thread.sleep(forTimeInterval: 0.1)
        }
        throw Timeout(description: "timed out waiting for \(description); screen:\n\(last)")
    }

    func type(_ keys: String...) throws {
        try tmux(["send-keys", "-t", sessionName] + keys)
    }

    func type(in session: String, _ keys: String...) throws {
        try tmux(["send-keys", "-t", session] + keys)
    }

    /// Two REPLs open at once with HOME set to a fresh folder: each appends its own lines at exit,
    /// so the file in $HOME ends with both sessions' lines, and the size limit truncates it.
    func testTwoReplsKeepEachOthersHistoryInHome() throws {
        let home = FileManager.default.temporaryDirectory.appendingPathComponent("\(sessionName)-home")
        try FileManager.default.createDirectory(at: home, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: home) }
        let file = home.appendingPathComponent(".qsh_history")
        try "older line 1\nolder line 2\n".write(to: file, atomically: true, encoding: .utf8)

        func start(_ name: String, limit: Int) throws {
            let command = "env -u QSH_HISTFILE HOME='\(home.path)' QSH_HISTSIZE=\(limit) '\(QshProcess.executable.path)'; echo QSH-EXITED-$?; sleep 30"
            try tmux(["new-session", "-d", "-s", name, "-x", "100", "-y", "30", command])
            _ = try waitFor("the prompt of \(name)", in: name) { $0.contains("qsh>") }
        }
        let (first, second) = (sessionName + "-a", sessionName + "-b")
        try start(first, limit: 100)
        try start(second, limit: 100)
        try type(in: first, "print \"from a 1\"", "Enter")
        try type(in: second, "print \"from b 1\"", "Enter")
        try type(in: first, "print \"from a 2\"", "Enter")
        _ = try waitFor("a's output", in: first) { $0.contains("\nfrom a 2") }
        _ = try waitFor("b's output", in: second) { $0.contains("\nfrom b 1") }
        try type(in: first, "C-d")
        _ = try waitFor("a's exit", in: first) { $0.contains("QSH-EXITED-0") }
        try type(in: second, "C-d")
        _ = try waitFor("b's exit", in: second) { $0.contains("QSH-EXITED-0") }

        let lines = try String(contentsOf: file, encoding: .utf8).split(separator: "\n").map(String.init)
        XCTAssertEqual(lines, ["older line 1", "older line 2", "print \"from a 1\"", "print \"from a 2\"", "print \"from b 1\""])

        // A third session with a limit of 3 lines keeps the newest three.
        let third = sessionName
        try start(third, limit: 3)
        try type(in: third, "print \"from c\"", "Enter")
        _ = try waitFor("c's output", in: third) { $0.contains("\nfrom c") }
        try type(in: third, "C-d")
        _ = try waitFor("c's exit", in: third) { $0.contains("QSH-EXITED-0") }
        let truncated = try String(contentsOf: file, encoding: .utf8).split(separator: "\n").map(String.init)
        XCTAssertEqual(truncated, ["print \"from a 2\"", "print \"from b 1\"", "print \"from c\""])
    }

    func testTypingCompletionErrorsInterruptAndExit() throws {
        let environment = QshProcess.environment
        let command = "env QSH_HISTFILE='\(historyFile.path)' QSH_MODELS='\(environment["QSH_MODELS"] ?? "")' QSH_DATA='\(environment["QSH_DATA"] ?? "")' "
            + "'\(QshProcess.executable.path)'; echo QSH-EXITED-$?; sleep 30"
        try tmux(["new-session", "-d", "-s", sessionName, "-x", "120", "-y", "40", command])
        _ = try waitFor("the prompt") { $0.contains("qsh>") }

        // Completion: "prin<Tab>" becomes "print ".
        try type("prin", "Tab")
        _ = try waitFor("completion of print") { $0.contains("qsh> print") }
        try type("\"hello from the repl\"", "Enter")
        _ = try waitFor("print output") { $0.contains("\nhello from the repl") }

        // An error prints and the session goes on.
        try type("laod resnet20", "Enter")
        _ = try waitFor("the error") { $0.contains("did you mean 'load'?") }
        try type("print \"still alive\"", "Enter")
        _ = try waitFor("the next command") { $0.contains("\nstill alive") }

        // A block spans lines.
        try type("for i in 1..2 {", "Enter")
        _ = try waitFor("continuation prompt") { $0.contains("...>") }
        try type("print \"loop $i\"", "Enter", "}", "Enter")
        _ = try waitFor("loop output") { $0.contains("loop 2") }

        // Ctrl-C abandons the line being typed without leaving qsh.
        try type("print \"never\"")
        try type("C-c")
        try type("print \"after ctrl-c\"", "Enter")
        let afterInterrupt = try waitFor("output after Ctrl-C") { $0.contains("\nafter ctrl-c") }
        XCTAssertFalse(afterInterrupt.contains("\nnever"))

        // The prompt shows the model; Ctrl-C interrupts a running command and qsh carries on.
        try type("load resnet20", "Enter")
        _ = try waitFor("the model in the prompt", seconds: 60) { $0.contains("qsh resnet20>") }
        try type("for i in 1..1000 { eval cifar10 }", "Enter")
        Thread.sleep(forTimeInterval: 1.0)
        try type("C-c")
        _ = try waitFor("the interruption", seconds: 60) { $0.contains("error: interrupted") }
        try type("print \"after interrupt\"", "Enter")
        _ = try waitFor("output after the interruption") { $0.contains("\nafter interrupt") }

        // Ctrl-D leaves with status 0, and the history was written.
        try type("C-d")
        _ = try waitFor("exit") { $0.contains("QSH-EXITED-0") }
        let history = try String(contentsOf: historyFile, encoding: .utf8)
        XCTAssertTrue(history.contains("print \"still alive\""), history)
    }
}
