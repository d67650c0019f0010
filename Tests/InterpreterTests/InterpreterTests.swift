import Interpreter
import QLang
import XCTest

/// Runs recipe text in a fresh session and captures what it prints.
final class RecipeHarness {
    let output = CapturedOutput()
    let errors = CapturedOutput()
    let session: Session

    init(registry: CommandRegistry = .standard) {
        session = Session(registry: registry, output: output, errors: errors)
    }

    @discardableResult
    func run(_ text: String, file: String = "test.qs") -> ExitStatus {
        RecipeRunner(session: session).run(text: text, fileName: file)
    }

    func check(_ text: String) -> ExitStatus {
        RecipeRunner(session: session).run(text: text, fileName: "test.qs", checkOnly: true)
    }
}

final class InterpreterTests: XCTestCase {
    func testPrintSubstitutesVariablesAndResults() {
        let harness = RecipeHarness()
        XCTAssertEqual(harness.run("let lam = 0.4\nprint \"lambda=$lam\" $lam"), .success)
        XCTAssertEqual(harness.output.text, "lambda=0.4 0.4\n")
    }

    func testQuotedArgumentsTakeVariablesSoLoopsCanNameTheirFiles() throws {
        let harness = RecipeHarness()
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("loop-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        XCTAssertEqual(harness.run("for n in 1..2 { history save \"\(folder.path)/h-$n.qs\" }\nlet tag = \"run-${n}b\"\nprint $tag \"$unknown\""),
                       .success, harness.errors.text)
        XCTAssertTrue(FileManager.default.fileExists(atPath: folder.appendingPathComponent("h-1.qs").path))
        XCTAssertTrue(FileManager.default.fileExists(atPath: folder.appendingPathComponent("h-2.qs").path))
        XCTAssertTrue(harness.output.text.hasSuffix("run-2b $unknown\n"), harness.output.text)
    }

    func testForLoopOverListAndRange() {
        let harness = RecipeHarness()
        harness.run("for b in 2..4 { print $b }; for x in 0.1, 0.2 { echo \"x=${x}\" }")
        XCTAssertEqual(harness.output.text, "2\n3\n4\nx=0.1\nx=0.2\n")
        harness.output.clear()
        XCTAssertEqual(harness.run("let seeds = 1, 3..5\nfor s in $seeds { print $s }\nfor s in 7, 9..10 { print $s }"), .success)
        XCTAssertEqual(harness.output.text, "1\n3\n4\n5\n7\n9\n10\n")
    }

    /// Ranges were expanded into arrays before the first iteration, so checking this loop asked for
    /// 32 GB (Fuzz/corpus/qlang/regression-huge-loop.qs); bounds near Int.max went through Double
    /// and were refused as "not an integer".
    func testHugeLoopRangesAreNeverMaterialized() {
        let harness = RecipeHarness()
        let recipe = "for i in 0..1000000000 {\n    print $i\n}\nfor j in 5..1, 0..9223372036854775807 { print $j }\n"
        XCTAssertEqual(harness.check(recipe), .success, harness.errors.text)
        XCTAssertEqual(harness.output.text, "")
        XCTAssertEqual(harness.run("for s in 3..1, 2..3, 7 { print $s }\nfor t in 9223372036854775806..9223372036854775807 { print $t }"),
                       .success, harness.errors.text)
        XCTAssertEqual(harness.output.text, "2\n3\n7\n9223372036854775806\n9223372036854775807\n")
    }

    func testPinnedVariableOverridesLet() throws {
        let harness = RecipeHarness()
        try RecipeRunner(session: harness.session).applyOverrides(["lam=0.5"])
        harness.run("let lam = 0.4\nprint $lam")
        XCTAssertEqual(harness.output.text, "0.5\n")
    }

    func testExpectPassesAndFailsWithLocation() {
        let harness = RecipeHarness()
        harness.session.values["top1"] = 91.73
        XCTAssertEqual(harness.run("expect top1 >= 90.5\nexpect top1 == 91.7 +- 0.05"), .success)
        XCTAssertTrue(harness.output.text.contains("expect top1 >= 90.5: ok (top1 = 91.73)"))
        XCTAssertEqual(harness.run("print 1\nexpect top1 > 95", file: "sweep.qs"), .recipeFailed)
        XCTAssertTrue(harness.errors.text.contains("sweep.qs:2:1: error: expectation failed: top1 is 91.73, expected top1 > 95"),
                      harness.errors.text)
        XCTAssertTrue(harness.errors.text.contains("expect top1 > 95"))
    }

    func testExpectWithoutResultSaysWhatToRun() {
        let harness = RecipeHarness()
        XCTAssertEqual(harness.run("expect top1 >= 90"), .recipeFailed)
        XCTAssertTrue(harness.errors.text.contains("no result named 'top1'"), harness.errors.text)
        XCTAssertTrue(harness.errors.text.contains("run 'eval' first"), harness.errors.text)
    }

    func testUnknownCommandSuggestsClosest() {
        let harness = RecipeHarness()
        XCTAssertEqual(harness.run("print 1\n  laod resnet20"), .recipeFailed)
        XCTAssertTrue(harness.errors.text.contains("test.qs:2:3: error: unknown command 'laod'"), harness.errors.text)
        XCTAssertTrue(harness.errors.text.contains("did you mean 'load'?"), harness.errors.text)
        XCTAssertEqual(harness.output.text, "1\n", "statements before the error ran")
    }

    func testUnknownOptionAndWrongTypeFailBeforeRunning() {
        let harness = RecipeHarness()
        XCTAssertEqual(harness.run("compensate dfmpc lamda=0.4"), .recipeFailed)
        XCTAssertTrue(harness.errors.text.contains("unknown option 'lamda'"), harness.errors.text)
        XCTAssertTrue(harness.errors.text.contains("did you mean 'lambda'?"), harness.errors.text)
        harness.errors.clear()
        XCTAssertEqual(harness.run("quantize layer 2..5 bits=six"), .recipeFailed)
        XCTAssertTrue(harness.errors.text.contains("bits expects an integer"), harness.errors.text)
        harness.errors.clear()
        XCTAssertEqual(harness.run("quantize layer 1 scheme=dorefo"), .recipeFailed)
        XCTAssertTrue(harness.errors.text.contains("did you mean 'dorefa'?"), harness.errors.text)
        harness.errors.clear()
        XCTAssertEqual(harness.run("fold bm"), .recipeFailed)
        XCTAssertTrue(harness.errors.text.contains("did you mean 'fold bn'?"), harness.errors.text)
    }

    func testModelCommandsWithoutModelSayHowToGetOne() {
        let harness = RecipeHarness()
        XCTAssertEqual(harness.run("ternary layer 3.."), .recipeFailed)
        XCTAssertTrue(harness.errors.text.contains("'ternary' needs a model"), harness.errors.text)
        XCTAssertTrue(harness.errors.text.contains("load one first"), harness.errors.text)
    }

    func testUndefinedVariableSuggests() {
        let harness = RecipeHarness()
        XCTAssertEqual(harness.run("let lambda = 1\nprint $lamda"), .recipeFailed)
        XCTAssertTrue(harness.errors.text.contains("undefined variable '$lamda'"), harness.errors.text)
        XCTAssertTrue(harness.errors.text.contains("did you mean '$lambda'?"), harness.errors.text)
    }

    func testCheckValidatesWithoutRunning() {
        let harness = RecipeHarness()
        XCTAssertEqual(harness.check("load resnet20\nfor lam in 0.1, 0.2 { compensate dfmpc lambda=$lam }\neval cifar10\nexpect top1 >= 90"), .success)
        XCTAssertEqual(harness.output.text, "", "nothing ran")
        XCTAssertEqual(harness.check("load resnet20\ncompensate dfmpc lambda=x"), .recipeFailed)
        XCTAssertTrue(harness.errors.text.contains("test.qs:2:25"), harness.errors.text)
    }

    func testCheckingAParsedProgramReportsAsCheckingItsText() throws {
        let text = "print 1\nlaod resnet20"
        let source = SourceFile(name: "parsed.qs", text: text)
        let parsed = RecipeHarness()
        XCTAssertEqual(RecipeRunner(session: parsed.session).run(try Parser.parse(source), parsedFrom: source, checkOnly: true),
                       .recipeFailed)
        let fromText = RecipeHarness()
        XCTAssertEqual(RecipeRunner(session: fromText.session).run(text: text, fileName: "parsed.qs", checkOnly: true),
                       .recipeFailed)
        XCTAssertEqual(parsed.errors.text, fromText.errors.text)
        XCTAssertTrue(parsed.errors.text.contains("parsed.qs:2:1: error: unknown command 'laod'"), parsed.errors.text)
        XCTAssertTrue(parsed.errors.text.contains("did you mean 'load'?"), parsed.errors.text)
        XCTAssertEqual(parsed.session.mainRecipe, "parsed.qs")
        XCTAssertEqual(parsed.output.text, "", "nothing ran")
    }

    func testHelpListsCommandsAndExplainsOne() {
        let harness = RecipeHarness()
        harness.run("help")
        XCTAssertTrue(harness.output.text.contains("compensate dfmpc"))
        XCTAssertTrue(harness.output.text.contains("Quantization"))
        harness.output.clear()
        harness.run("help compensate dfmpc")
        XCTAssertTrue(harness.output.text.contains("usage: compensate dfmpc"), harness.output.text)
        XCTAssertTrue(harness.output.text.contains("lambda1=X (also lambda)"), harness.output.text)
        XCTAssertEqual(harness.run("help compensat"), .recipeFailed)
        XCTAssertTrue(harness.errors.text.contains("did you mean 'compensate'?"), harness.errors.text)
    }

    func testHistorySaveWritesARecipeThatReparses() throws {
        let harness = RecipeHarness()
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("qsh-history-\(UUID()).qs")
        defer { try? FileManager.default.removeItem(at: file) }
        harness.run("let lam = 0.25\nfor b in 2..3 { print $b }")
        harness.run("history save \"\(file.path)\"")
        let text = try String(contentsOf: file, encoding: .utf8)
        XCTAssertTrue(text.contains("let lam = 0.25"), text)
        XCTAssertTrue(text.contains("for b in 2..3 {"), text)
        let replay = RecipeHarness()
        XCTAssertEqual(replay.run(text), .success)
        XCTAssertEqual(replay.output.text, "2\n3\n")
    }

    func testSourceRunsAFileInTheSameSession() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("qsh-source-\(UUID()).qs")
        defer { try? FileManager.default.removeItem(at: file) }
        try "let shared = 7\nprint \"sourced\"\n".write(to: file, atomically: true, encoding: .utf8)
        let harness = RecipeHarness()
        XCTAssertEqual(harness.run("source \"\(file.path)\"\nprint $shared"), .success)
        XCTAssertEqual(harness.output.text, "sourced\n7\n")
    }

    func testErrorInSourcedFileShowsThatFile() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("qsh-bad-\(UUID()).qs")
        defer { try? FileManager.default.removeItem(at: file) }
        try "print 1\nfrobnicate\n".write(to: file, atomically: true, encoding: .utf8)
        let harness = RecipeHarness()
        XCTAssertEqual(harness.run("source \"\(file.path)\""), .recipeFailed)
        XCTAssertTrue(harness.errors.text.contains("\(file.path):2:1: error: unknown command 'frobnicate'"), harness.errors.text)
    }

    func testSetChangesSettings() {
        let harness = RecipeHarness()
        XCTAssertEqual(harness.run("set threads=1 models=\"/tmp/models\""), .success)
        XCTAssertEqual(harness.session.settings.threads, 1)
        XCTAssertEqual(harness.session.settings.modelsDirectory, "/tmp/models")
        XCTAssertEqual(harness.run("set threads=0"), .recipeFailed)
    }

    func testUndoWithoutChangesIsAnError() {
        let harness = RecipeHarness()
        XCTAssertEqual(harness.run("undo"), .recipeFailed)
        XCTAssertTrue(harness.errors.text.contains("nothing to undo"))
    }
}

final class CompletionTests: XCTestCase {
    let completer = Completer(registry: .standard, valueWords: ["load": ["resnet20", "resnet56", "nm-resnet56"]])

    func testCompletesCommandWords() {
        XCTAssertEqual(completer.completions(for: "comp"), ["compensate"])
        XCTAssertTrue(completer.completions(for: "").contains("load"))
        XCTAssertTrue(completer.completions(for: "").contains("let"))
    }

    func testCompletesSubwordsOptionsAndValues() {
        XCTAssertEqual(completer.completions(for: "compensate "), ["dfmpc"])
        XCTAssertEqual(completer.completions(for: "compensate dfmpc lam"), ["lambda1=", "lambda2="])
        XCTAssertEqual(completer.completions(for: "quantize layer 2..5 scheme=sy"), ["symmetric"])
        XCTAssertEqual(completer.completions(for: "load res"), ["resnet20", "resnet56"])
        XCTAssertEqual(completer.completions(for: "ternary la"), ["layer"])
        XCTAssertEqual(completer.completions(for: "help fo"), ["fold"])
    }

    func testCompletesInsideLaterStatements() {
        XCTAssertEqual(completer.completions(for: "print 1; fo"), ["fold", "for"])
    }
}

final class ReplTests: XCTestCase {
    final class ScriptedReader: LineReader {
        var lines: [String]
        var prompts: [String] = []
        var history: [String] = []
        init(_ lines: [String]) { self.lines = lines }
        func readLine(prompt: String, freshPrompt: String) -> String? {
            prompts.append(prompt)
            return lines.isEmpty ? nil : lines.removeFirst()
        }
        func takeAbandoned() -> Bool { false }
        func addToHistory(_ entry: String) { history.append(entry) }
    }

    func testErrorsPrintAndTheSessionGoesOn() {
        let harness = RecipeHarness()
        let reader = ScriptedReader(["laod resnet20", "print \"still here\""])
        Repl(interpreter: Interpreter(session: harness.session), reader: reader).run()
        XCTAssertTrue(harness.errors.text.contains("did you mean 'load'?"))
        XCTAssertTrue(harness.output.text.contains("still here"))
    }

    func testBlocksAndContinuationsSpanLines() {
        let harness = RecipeHarness()
        let reader = ScriptedReader(["for b in 1..2 {", "  print $b", "}", "print \\", "  \"joined\""])
        Repl(interpreter: Interpreter(session: harness.session), reader: reader).run()
        XCTAssertEqual(harness.output.text, "1\n2\njoined\n\n")
        XCTAssertEqual(reader.prompts, ["qsh> ", "...> ", "...> ", "qsh> ", "...> ", "qsh> "])
        XCTAssertEqual(reader.history.count, 2)
    }
}
