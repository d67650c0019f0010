import Foundation
import XCTest

/// The `qsh` executable under bad recipes and faults: a bad recipe exits with 1 and a located
/// error, never a signal; a write that cannot finish (no directory, file-size limit, SIGKILL,
/// SIGTERM) leaves the old file as it was and no temporary file behind.
final class FaultTests: XCTestCase {
    var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("qsh-faults-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDown() {
        try? FileManager.default.removeItem(at: directory)
    }

    var resnet20Present: Bool {
        let models = QshProcess.environment["QSH_MODELS"] ?? ""
        return FileManager.default.fileExists(atPath: models + "/resnet20-12fca82f.th")
    }

    func listing() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []).sorted()
    }

    final class Collected: @unchecked Sendable {
        var data = Data()
        var handle: FileHandle?
        let done = DispatchGroup()
    }

    /// Starts `qsh` (through `sh` when a shell prefix such as `ulimit -f 100` is given). Its
    /// error stream is a pipe (a file would count against the size limit), read as it comes.
    func start(_ arguments: [String], shellPrefix: String? = nil) throws -> (Process, Collected) {
        let process = Process()
        if let shellPrefix {
            process.executableURL = URL(fileURLWithPath: "/bin/sh")
            process.arguments = ["-c", "\(shellPrefix); exec \"$0\" \"$@\"", QshProcess.executable.path] + arguments
        } else {
            process.executableURL = QshProcess.executable
            process.arguments = arguments
        }
        var environment = QshProcess.environment
        environment["OMP_WAIT_POLICY"] = "passive"
        // The child runs in a scratch directory: relative model and data folders become absolute.
        for key in ["QSH_MODELS", "QSH_DATA"] {
            if let value = environment[key], !value.hasPrefix("/") {
                environment[key] = QshProcess.packageRoot.appendingPathComponent(value).standardized.path
            }
        }
        process.environment = environment
        process.currentDirectoryURL = directory
        let errors = Pipe()
        process.standardOutput = FileHandle.nullDevice
        process.standardError = errors
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let collected = Collected()
        collected.handle = errors.fileHandleForReading
        collected.done.enter()
        DispatchQueue.global().async {
            collected.data = collected.handle?.readDataToEndOfFile() ?? Data()
            collected.done.leave()
        }
        return (process, collected)
    }

    func finish(_ started: (Process, Collected)) -> (status: Int32, signaled: Bool, errors: String) {
        started.0.waitUntilExit()
        started.1.done.wait()
        return (started.0.terminationStatus, started.0.terminationReason == .uncaughtSignal,
                String(decoding: started.1.data, as: UTF8.self))
    }

    func run(_ arguments: [String], shellPrefix: String? = nil) throws -> (status: Int32, signaled: Bool, errors: String) {
        finish(try start(arguments, shellPrefix: shellPrefix))
    }

    func testBadRecipesExitWithOneAndALocatedError() throws {
        let recipes = [
            "laod resnet20",
            "print 1\nquantize layer 2..5 bits=six",
            "ternary layer 3..",
            "fold bn bogus=1",
            "eval cifar10 limit=0",
            "for i in 1..2 { print $i }\nsave",
            "load resnet20\ncalibrate",
            "load resnet20\ncompensate dfmpc",
            "print \"unterminated",
        ]
        for recipe in recipes {
            let result = try run(["-c", recipe])
            XCTAssertEqual(result.status, 1, "\(recipe): \(result.errors)")
            XCTAssertFalse(result.signaled, recipe)
            XCTAssertNotNil(result.errors.range(of: #"<-c>:\d+:\d+: error: "#, options: .regularExpression), "\(recipe): \(result.errors)")
            XCTAssertTrue(result.errors.contains("^"), "\(recipe): no caret: \(result.errors)")
        }
    }

    func testWritesUnderAFileFailNamingThePathAndLeaveNothing() throws {
        let blocker = directory.appendingPathComponent("blocker")
        try Data("a regular file".utf8).write(to: blocker)
        let inside = blocker.path + "/out"
        let recipes = [
            "history save \"\(inside).qs\"",
            "report to \"\(inside).json\"",
        ] + (resnet20Present ? ["load resnet20\nsave \"\(inside).safetensors\""] : [])
        for recipe in recipes {
            let result = try run(["-c", recipe])
            XCTAssertEqual(result.status, 1, "\(recipe): \(result.errors)")
            XCTAssertTrue(result.errors.contains(inside), "\(recipe): the error should name the path: \(result.errors)")
            XCTAssertTrue(result.errors.contains("Not a directory"), "\(recipe): \(result.errors)")
        }
        let json = try run(["--json", inside + ".json", "-c", "print 1"])
        XCTAssertEqual(json.status, 1, json.errors)
        XCTAssertTrue(json.errors.contains(inside + ".json"), json.errors)
        XCTAssertEqual(listing(), ["blocker"])
        XCTAssertEqual(try Data(contentsOf: blocker), Data("a regular file".utf8))
    }

    func testAFileSizeLimitFailsTheWriteAndKeepsTheOldFile() throws {
        try XCTSkipUnless(resnet20Present, "resnet20 checkpoint not found")
        let target = directory.appendingPathComponent("model.safetensors")
        let old = Data("the old file".utf8)
        try old.write(to: target)
        // 100 blocks of 512 bytes: far less than resnet20's 1 MB.
        let result = try run(["-c", "load resnet20\nsave \"model.safetensors\""], shellPrefix: "ulimit -f 100")
        XCTAssertFalse(result.signaled, "SIGXFSZ killed qsh: \(result.errors)")
        XCTAssertEqual(result.status, 1, result.errors)
        XCTAssertTrue(result.errors.contains(target.lastPathComponent), result.errors)
        XCTAssertTrue(result.errors.contains("File too large"), result.errors)
        XCTAssertEqual(try Data(contentsOf: target), old)
        XCTAssertEqual(listing(), ["model.safetensors"])

        // A report over the limit: the old report stays and the error names it.
        let report = directory.appendingPathComponent("run.json")
        try old.write(to: report)
        let big = String(repeating: "x", count: 2000)
        let json = try run(["--json", "run.json", "-c", "let note = \"\(big)\"\nreport to \"run.json\""], shellPrefix: "ulimit -f 1")
        XCTAssertFalse(json.signaled, json.errors)
        XCTAssertEqual(json.status, 1, json.errors)
        XCTAssertTrue(json.errors.contains("run.json"), json.errors)
        XCTAssertEqual(try Data(contentsOf: report), old)
        XCTAssertEqual(listing(), ["model.safetensors", "run.json"])
    }

    /// A full file system (a tmpfs of 256 KiB, filled): each write fails with "No space left on
    /// device" naming its file, the old files stay as they were, and nothing else is left.
    func testAFullDiskFailsEveryWriteAndKeepsTheOldFiles() throws {
        let disk = try TinyFileSystem(mountedAt: directory.appendingPathComponent("disk"), for: self)
        let old = Data("the old file".utf8)
        var writes = [("history.qs", "print 1\nhistory save \"PATH\""), ("run.json", "print 1\nreport to \"PATH\"")]
        if resnet20Present {
            writes += [("model.safetensors", "load resnet20\nsave \"PATH\""), ("model.onnx", "load resnet20\nexport onnx \"PATH\"")]
        }
        for (name, _) in writes { try old.write(to: disk.root.appendingPathComponent(name)) }
        try disk.fill()

        for (name, recipe) in writes {
            let path = disk.root.appendingPathComponent(name).path
            let result = try run(["-c", recipe.replacingOccurrences(of: "PATH", with: path)])
            XCTAssertFalse(result.signaled, "\(name): \(result.errors)")
            XCTAssertEqual(result.status, 1, "\(name): \(result.errors)")
            XCTAssertTrue(result.errors.contains(path), "\(name): the error should name the path: \(result.errors)")
            XCTAssertTrue(result.errors.contains("No space left on device"), "\(name): \(result.errors)")
        }
        // The report written at exit (--json) fails the same way.
        let report = disk.root.appendingPathComponent("run.json").path
        let json = try run(["--json", report, "-c", "print 1"])
        XCTAssertFalse(json.signaled, json.errors)
        XCTAssertEqual(json.status, 1, json.errors)
        XCTAssertTrue(json.errors.contains(report), json.errors)
        XCTAssertTrue(json.errors.contains("No space left on device"), json.errors)

        for (name, _) in writes {
            XCTAssertEqual(try Data(contentsOf: disk.root.appendingPathComponent(name)), old, name)
        }
        XCTAssertEqual(disk.listing(), (writes.map(\.0) + [TinyFileSystem.filler]).sorted(), "no temporary file is left")
    }

    func testSIGKILLDuringSaveLeavesTheOldOrTheNewFile() throws {
        try XCTSkipUnless(resnet20Present, "resnet20 checkpoint not found")
        let recipe = "load resnet20\nsave \"model.safetensors\""
        let first = try run(["-c", recipe])
        XCTAssertEqual(first.status, 0, first.errors)
        let target = directory.appendingPathComponent("model.safetensors")
        let complete = try Data(contentsOf: target)
        var generator = SystemRandomNumberGenerator()
        for attempt in 0..<6 {
            try Data("old \(attempt)".utf8).write(to: target)
            let started = try start(["-c", recipe + "\n" + recipe.replacingOccurrences(of: "load resnet20\n", with: "")])
            usleep(UInt32.random(in: 200_000...1_500_000, using: &generator))
            kill(started.0.processIdentifier, SIGKILL)
            _ = finish(started)
            let now = try Data(contentsOf: target)
            XCTAssertTrue(now == complete || now == Data("old \(attempt)".utf8), "attempt \(attempt): a half file (\(now.count) bytes)")
        }
        // The next save removes what the killed writers left.
        let last = try run(["-c", recipe])
        XCTAssertEqual(last.status, 0, last.errors)
        XCTAssertEqual(try Data(contentsOf: target), complete)
        XCTAssertEqual(listing(), ["model.safetensors"])
    }

    func testSIGTERMStopsBetweenBatchesAndExitsWith143() throws {
        try XCTSkipUnless(resnet20Present, "resnet20 checkpoint not found")
        let started = try start(["--json", "run.json", "-c", "load resnet20\nfor i in 1..100 { eval cifar10 }"])
        sleep(3)
        started.0.terminate()
        let result = finish(started)
        XCTAssertFalse(result.signaled, result.errors)
        XCTAssertEqual(result.status, 143, result.errors)
        XCTAssertTrue(result.errors.contains("interrupted"), result.errors)
        XCTAssertEqual(listing(), [], "no report, no partial file")

        let saving = try start(["-c", "load resnet20\nfor i in 1..100000 { save \"model.safetensors\" }"])
        sleep(3)
        saving.0.terminate()
        let saved = finish(saving)
        XCTAssertEqual(saved.status, 143, saved.errors)
        XCTAssertTrue(listing() == ["model.safetensors"] || listing() == [], "\(listing())")
    }
}

extension ReplTerminalTests {
    /// The REPL's history at exit: a place it cannot write, and a file-size limit smaller than
    /// the history. The session still exits with 0, says once which file failed, and the old
    /// history and the directory are as they were.
    func testHistoryThatCannotBeWrittenKeepsTheOldFile() throws {
        let home = FileManager.default.temporaryDirectory.appendingPathComponent("\(sessionName)-faults")
        try FileManager.default.createDirectory(at: home, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: home) }
        let blocker = home.appendingPathComponent("blocker")
        try "a regular file\n".write(to: blocker, atomically: true, encoding: .utf8)
        let history = home.appendingPathComponent("history")
        let old = (1...200).map { "print \"older line \($0)\"" }.joined(separator: "\n") + "\n"
        try old.write(to: history, atomically: true, encoding: .utf8)

        for (file, prefix, reason) in [(blocker.path + "/history", "", "Not a directory"),
                                        (history.path, "ulimit -f 1; ", "File too large")] {
            try expectHistoryNotWritten(to: file, shellPrefix: prefix, reason: reason)
            XCTAssertEqual(try String(contentsOf: history, encoding: .utf8), old)
            XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: home.path).sorted(), ["blocker", "history"])
        }
    }

    /// The same on a full file system (a filled tmpfs of 256 KiB).
    func testHistoryOnAFullDiskKeepsTheOldFile() throws {
        let disk = try TinyFileSystem(
            mountedAt: FileManager.default.temporaryDirectory.appendingPathComponent("\(sessionName)-disk"), for: self)
        let history = disk.root.appendingPathComponent("history")
        let old = (1...200).map { "print \"older line \($0)\"" }.joined(separator: "\n") + "\n"
        try old.write(to: history, atomically: false, encoding: .utf8)
        try disk.fill()
        try expectHistoryNotWritten(to: history.path, reason: "No space left on device")
        XCTAssertEqual(try String(contentsOf: history, encoding: .utf8), old)
        XCTAssertEqual(disk.listing(), [TinyFileSystem.filler, "history"].sorted())
    }

    /// Starts the REPL with its history in `file` (after `shellPrefix`), runs one line and ends it
    /// with Ctrl-D: qsh exits with 0 and says once that it could not write `file`, and why.
    func expectHistoryNotWritten(to file: String, shellPrefix: String = "", reason: String) throws {
        let command = "\(shellPrefix)QSH_HISTFILE='\(file)' '\(QshProcess.executable.path)'; echo QSH-EXITED-$?; sleep 30"
        try tmux(["new-session", "-d", "-s", sessionName, "-x", "150", "-y", "30", command])
        defer { _ = try? tmux(["kill-session", "-t", sessionName]) }
        _ = try waitFor("the prompt") { $0.contains("qsh>") }
        try type("print \"new line\"", "Enter")
        _ = try waitFor("the output") { $0.contains("\nnew line") }
        try type("C-d")
        let screen = try waitFor("the exit") { $0.contains("QSH-EXITED-") }
        XCTAssertTrue(screen.contains("QSH-EXITED-0"), screen)
        XCTAssertTrue(screen.contains("could not write the history file \(file)"), screen)
        XCTAssertTrue(screen.contains(reason), screen)
    }

    /// SIGTERM in the REPL: during a command it stops the command, saves the history and exits
    /// with 143; at the prompt it ends qsh as the signal does by default (the shell sees 143).
    func testSIGTERMInTheRepl() throws {
        let models = QshProcess.environment["QSH_MODELS"].map { $0.hasPrefix("/") ? $0 : QshProcess.packageRoot.appendingPathComponent($0).standardized.path } ?? ""
        let data = QshProcess.environment["QSH_DATA"].map { $0.hasPrefix("/") ? $0 : QshProcess.packageRoot.appendingPathComponent($0).standardized.path } ?? ""
        guard FileManager.default.fileExists(atPath: models + "/resnet20-12fca82f.th") else {
            throw XCTSkip("resnet20 checkpoint not found in \(models)")
        }
        func qshProcessID() throws -> pid_t? {
            let shell = try tmux(["display-message", "-p", "-t", sessionName, "#{pane_pid}"]).trimmingCharacters(in: .whitespacesAndNewlines)
            let children = (try? String(contentsOfFile: "/proc/\(shell)/task/\(shell)/children", encoding: .utf8)) ?? ""
            return children.split(separator: " ").first.flatMap { pid_t($0) }
        }
        for duringCommand in [true, false] {
            try? FileManager.default.removeItem(at: historyFile)
            let command = "QSH_HISTFILE='\(historyFile.path)' QSH_MODELS='\(models)' QSH_DATA='\(data)' '\(QshProcess.executable.path)'; echo QSH-EXITED-$?; sleep 30"
            try tmux(["new-session", "-d", "-s", sessionName, "-x", "150", "-y", "30", command])
            _ = try waitFor("the prompt") { $0.contains("qsh>") }
            if duringCommand {
                try type("load resnet20", "Enter")
                _ = try waitFor("the model") { $0.contains("qsh resnet20>") }
                try type("for i in 1..100 { eval cifar10 }", "Enter")
                Thread.sleep(forTimeInterval: 2)
            }
            let pid = try XCTUnwrap(try qshProcessID(), "qsh's process id")
            kill(pid, SIGTERM)
            let screen = try waitFor("the exit") { $0.contains("QSH-EXITED-") }
            XCTAssertTrue(screen.contains("QSH-EXITED-143"), screen)
            if duringCommand {
                XCTAssertTrue(screen.contains("interrupted"), screen)
                let history = (try? String(contentsOf: historyFile, encoding: .utf8)) ?? ""
                XCTAssertTrue(history.contains("for i in 1..100"), "history kept: \(history)")
            }
            _ = try? tmux(["kill-session", "-t", sessionName])
        }
    }
}

/// A tmpfs of a few pages for one test: filled, it gives writes the real "No space left on
/// device". Mounting needs root and a kernel that lets this process mount (CI runs as root);
/// elsewhere the test is skipped and says why. The file system is unmounted, and its mount
/// point removed, when the test ends.
struct TinyFileSystem {
    /// The file `fill()` writes.
    static let filler = "filler"
    let root: URL

    init(mountedAt root: URL, bytes: Int = 256 * 1024, for test: XCTestCase) throws {
        guard geteuid() == 0 else {
            throw XCTSkip("mounting a tmpfs needs root; id -u is \(geteuid())")
        }
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        let options = "size=\(bytes)"
        guard options.withCString({ mount("tmpfs", root.path, "tmpfs", 0, $0) }) == 0 else {
            let reason = String(cString: strerror(errno))
            try? FileManager.default.removeItem(at: root)
            throw XCTSkip("mount -t tmpfs -o \(options) tmpfs \(root.path) is not permitted here: \(reason)")
        }
        test.addTeardownBlock {
            if umount2(root.path, 0) != 0 { _ = umount2(root.path, Int32(MNT_DETACH)) }
            try? FileManager.default.removeItem(at: root)
        }
        self.root = root
    }

    /// Takes every free block with one file; a write of one more byte anywhere then fails.
    func fill() throws {
        let path = root.appendingPathComponent(Self.filler).path
        let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        defer { close(descriptor) }
        let block = [UInt8](repeating: 0x2E, count: 4096)
        var size = block.count
        while size > 0 {
            let written = block.withUnsafeBytes { write(descriptor, $0.baseAddress!, size) }
            if written < 0 {
                guard errno == ENOSPC else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
                size /= 2
            }
        }
        var status = statvfs()
        guard statvfs(root.path, &status) == 0, status.f_bavail == 0 else {
            throw XCTSkip("could not fill the tmpfs at \(root.path)")
        }
    }

    func listing() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: root.path)) ?? []).sorted()
    }
}
