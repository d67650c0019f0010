import Foundation
import QLang

/// One documentation test that did not pass, with where it is and what differed.
public struct DocTestFailure: Sendable, CustomStringConvertible {
    public var file: String
    /// 1-based line of the `qsh` block's opening fence (or 1 for a whole recipe).
    public var line: Int
    public var message: String
    /// A diff of expected against actual output, or what the block printed.
    public var detail: String

    public var description: String {
        "\(file):\(line): \(message)" + (detail.isEmpty ? "" : "\n" + detail)
    }
}

/// What testing one file found.
public struct DocTestFileResult: Sendable {
    public var file: String
    /// Blocks (or, for a recipe, expectations) that passed.
    public var passed: Int
    /// Blocks marked `ignore`.
    public var skipped: Int
    public var failures: [DocTestFailure]
    public var seconds: Double

    public var succeeded: Bool { failures.isEmpty }
}

/// Runs the `qsh` blocks of Markdown files and compares their output with the `output` block that
/// follows each of them; runs `.qs` recipes and checks their `expect` lines. See docs/doctests.md.
public final class DocTestRunner {
    /// Prepares each fresh session: directories, threads, `--set` overrides.
    public typealias SessionSetup = (Session) throws -> Void

    /// Info-string words after `qsh` that change how a block runs.
    public enum Attribute: String, CaseIterable, Sendable {
        /// Parse and check the block without running it (commands and options against the registry).
        case noRun = "no-run"
        /// Skip the block.
        case ignore
        /// The block must stop with an error; its output (with the error) is compared as usual.
        case fails
    }

    private let setup: SessionSetup
    /// Only parse and check blocks and recipes against the command registry, as `qsh check` does:
    /// fast enough for debug builds, where full evaluations take minutes.
    public let checkOnly: Bool

    public init(checkOnly: Bool = false, setup: @escaping SessionSetup = { _ in }) {
        self.checkOnly = checkOnly
        self.setup = setup
    }

    /// Tests one file: Markdown (`.md`, `.markdown`) block by block, anything else as a recipe.
    public func run(path: String) -> DocTestFileResult {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            return DocTestFileResult(file: path, passed: 0, skipped: 0, failures: [
                DocTestFailure(file: path, line: 1, message: "cannot read the file: no such file or not UTF-8 text",
                               detail: "check the path; it is relative to \(FileManager.default.currentDirectoryPath)")
            ], seconds: 0)
        }
        return Self.isMarkdown(path) ? runMarkdown(text, name: path) : runRecipe(text, name: path)
    }

    /// Markdown files are tested block by block; any other file is a recipe.
    public static func isMarkdown(_ path: String) -> Bool {
        let lowercased = path.lowercased()
        return lowercased.hasSuffix(".md") || lowercased.hasSuffix(".markdown")
    }

    /// Runs every `qsh` block of a document in one session, in order.
    public func runMarkdown(_ document: String, name: String) -> DocTestFileResult {
        let start = Date()
        var result = DocTestFileResult(file: name, passed: 0, skipped: 0, failures: [], seconds: 0)
        let captured = CapturedOutput()
        let session: Session
        do {
            session = try makeSession(captured)
        } catch {
            result.failures.append(DocTestFailure(file: name, line: 1, message: "cannot set up the session: \(error)", detail: ""))
            return result
        }
        let blocks = MarkdownBlocks.extract(from: document)
        for (index, block) in blocks.enumerated() where block.language == "qsh" {
            let expected = expectedOutput(after: index, in: blocks)
            if let failure = runBlock(block, expected: expected, in: session, captured: captured, file: name) {
                result.failures.append(failure)
            } else if block.attributes.contains(Attribute.ignore.rawValue) {
                result.skipped += 1
            } else {
                result.passed += 1
            }
        }
        result.seconds = Date().timeIntervalSince(start)
        return result
    }

    /// Runs a recipe in a fresh session; it passes when it runs to the end, every `expect` holding.
    public func runRecipe(_ text: String, name: String) -> DocTestFileResult {
        let start = Date()
        var result = DocTestFileResult(file: name, passed: 0, skipped: 0, failures: [], seconds: 0)
        let captured = CapturedOutput()
        do {
            let session = try makeSession(captured)
            let status = RecipeRunner(session: session).run(text: text, fileName: name, checkOnly: checkOnly)
            let lines = OutputPattern.normalizedLines(captured.text)
            result.passed = lines.filter { OutputPattern.lineMatches(pattern: "expect [..]: ok ([..])", $0) }.count
            if status != .success {
                result.failures.append(DocTestFailure(file: name, line: Self.errorLine(in: captured.text, file: name) ?? 1,
                                                      message: "the recipe failed", detail: Self.tail(lines)))
            }
        } catch {
            result.failures.append(DocTestFailure(file: name, line: 1, message: "cannot set up the session: \(error)", detail: ""))
        }
        result.seconds = Date().timeIntervalSince(start)
        return result
    }

    /// Tests files in order, printing one line per file and every failure; the status is 1 if any failed.
    public func run(paths: [String], report: OutputSink) -> ExitStatus {
        var failedFiles = 0
        for path in paths {
            let result = run(path: path)
            for failure in result.failures { report.line(failure.description) }
            let time = String(format: "%.1f s", result.seconds)
            let unit = Self.isMarkdown(path) ? "block" : "expectation"
            let counted = "\(result.passed) \(unit)\(result.passed == 1 ? "" : "s") passed"
                + (result.skipped > 0 ? ", \(result.skipped) ignored" : "")
            if result.succeeded {
                report.line("\(path): ok (\(counted), \(time))")
            } else {
                failedFiles += 1
                report.line("\(path): FAILED (\(counted), \(result.failures.count) failed, \(time))")
            }
        }
        report.line("qsh test: \(paths.count - failedFiles) of \(paths.count) files passed")
        return failedFiles == 0 ? .success : .recipeFailed
    }

    // MARK: Blocks

    private func makeSession(_ captured: CapturedOutput) throws -> Session {
        // Output and errors share one buffer so that a block's error shows where it happened.
        let session = Session(output: captured, errors: captured)
        try setup(session)
        return session
    }

    /// The `output` block right after block `index`, with only blank lines between them.
    private func expectedOutput(after index: Int, in blocks: [FencedBlock]) -> FencedBlock? {
        guard index + 1 < blocks.count, blocks[index + 1].language == "output", blocks[index + 1].followsPreviousBlock else {
            return nil
        }
        return blocks[index + 1]
    }

    private func runBlock(_ block: FencedBlock, expected: FencedBlock?, in session: Session,
                          captured: CapturedOutput, file: String) -> DocTestFailure? {
        let known = Set(Attribute.allCases.map(\.rawValue))
        if let unknown = block.attributes.first(where: { !known.contains($0) }) {
            return DocTestFailure(file: file, line: block.fenceLine, message: "unknown block attribute '\(unknown)'",
                                  detail: "known attributes: " + Attribute.allCases.map(\.rawValue).joined(separator: ", "))
        }
        if block.attributes.contains(Attribute.ignore.rawValue) { return nil }
        if block.attributes.contains(Attribute.noRun.rawValue) {
            return checkBlock(block, in: session, captured: captured, file: file, neverRuns: true)
        }
        if checkOnly { return checkBlock(block, in: session, captured: captured, file: file, neverRuns: false) }
        let shouldFail = block.attributes.contains(Attribute.fails.rawValue)
        captured.clear()
        let status = RecipeRunner(session: session).run(text: Self.recipeText(of: block), fileName: file)
        let actualLines = OutputPattern.normalizedLines(captured.text)
        if status != .success && !shouldFail {
            return DocTestFailure(file: file, line: block.fenceLine, message: "the block failed",
                                  detail: Self.tail(actualLines) + "\n(mark the block 'qsh fails' if the error is what it shows)")
        }
        if status == .success && shouldFail {
            return DocTestFailure(file: file, line: block.fenceLine, message: "the block is marked 'fails' but ran without error",
                                  detail: Self.tail(actualLines))
        }
        guard let expected else { return nil }
        let pattern = OutputPattern(expected.text)
        if pattern.matches(lines: actualLines) { return nil }
        let diff = LineDiff.unified(
            expected: pattern.lines, actual: actualLines,
            expectedLabel: "expected (\(file):\(expected.fenceLine))", actualLabel: "actual",
            equal: { $0 == OutputPattern.lineWildcard || OutputPattern.lineMatches(pattern: $0, $1) })
        return DocTestFailure(file: file, line: block.fenceLine,
                              message: "the output differs from the expected output at line \(expected.fenceLine)",
                              detail: diff)
    }

    /// Checks a block without running it, as `qsh check` does: it is parsed, its variables are
    /// bound, and every command is resolved and its arguments bound against the registry, so a
    /// command or option that does not exist fails. No model is loaded, so nothing that needs one
    /// is checked, and an `output` block after it is not compared.
    ///
    /// A block marked `fails` may fail only when it runs; a block that `neverRuns` (`no-run`) and
    /// is marked `fails` must fail the check itself.
    private func checkBlock(_ block: FencedBlock, in session: Session, captured: CapturedOutput, file: String,
                            neverRuns: Bool) -> DocTestFailure? {
        captured.clear()
        let status = RecipeRunner(session: session).run(text: Self.recipeText(of: block), fileName: file, checkOnly: true)
        let shouldFail = block.attributes.contains(Attribute.fails.rawValue)
        let detail = Self.tail(OutputPattern.normalizedLines(captured.text))
        if status == .success {
            guard shouldFail && neverRuns else { return nil }
            return DocTestFailure(file: file, line: block.fenceLine,
                                  message: "the block is marked 'no-run fails' but passes 'qsh check'", detail: detail)
        }
        if shouldFail { return nil }
        return DocTestFailure(file: file, line: block.fenceLine, message: "the block does not pass 'qsh check'",
                              detail: detail)
    }

    /// Blank lines in front keep the document's line numbers in error messages.
    private static func recipeText(of block: FencedBlock) -> String {
        String(repeating: "\n", count: block.firstContentLine - 1) + block.text
    }

    /// The last lines of what a failing run printed: the error is at the end.
    private static func tail(_ lines: [String], count: Int = 20) -> String {
        ((lines.count > count ? ["..."] : []) + lines.suffix(count)).joined(separator: "\n")
    }

    /// The line of the first `FILE:LINE:COLUMN: error:` the run printed.
    private static func errorLine(in output: String, file: String) -> Int? {
        for line in output.split(separator: "\n") where line.hasPrefix(file + ":") {
            let fields = line.dropFirst(file.count + 1).split(separator: ":", maxSplits: 2)
            if fields.count >= 2, let number = Int(fields[0]) { return number }
        }
        return nil
    }
}
