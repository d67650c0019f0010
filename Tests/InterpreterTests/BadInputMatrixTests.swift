import Foundation
import Interpreter
import QuantOps
import XCTest

/// Every command of the registry with bad arguments: each must fail with a located error (file,
/// line and column, the line and a caret) before it runs, in a script and in the REPL, where the
/// model is then exactly as it was and `undo` still works. And commands in the wrong order or
/// without a model must name what to do first.
final class BadInputMatrixTests: XCTestCase {
    struct Case {
        var kind: String
        var command: String
        var statement: String
    }

    static let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("qsh-bad-input-\(getpid())")

    static func number(_ value: Double) -> String {
        value == value.rounded() && abs(value) < 1e15 ? String(Int(value)) : String(value)
    }

    /// An accepted value of a type, as a recipe writes it.
    static func valid(_ type: ParameterType) -> String? {
        switch type {
        case .integer(let range): return range.map { String(max($0.lowerBound, min($0.upperBound, 1))) } ?? "1"
        case .number(let range), .numbers(let range): return range.map { number($0.lowerBound) } ?? "0.5"
        case .boolean: return "true"
        case .text: return "x"
        case .path: return "\"\(scratch.path)/out.file\""
        case .choice(let words), .choiceOrInteger(let words, _): return words.first
        case .layers: return "1"
        case .any: return "1"
        }
    }

    /// A value of the wrong kind, or nil when the type takes anything.
    static func wrongType(_ type: ParameterType) -> String? {
        switch type {
        case .integer, .number, .numbers: return "abc"
        case .boolean: return "42"
        case .text, .path: return "1..3"
        case .choice, .choiceOrInteger: return "zzzq"
        case .layers: return "true"
        case .any: return nil
        }
    }

    /// A value of the right kind outside the declared range, or nil when there is no range.
    static func outOfRange(_ type: ParameterType) -> String? {
        switch type {
        case .integer(let range?):
            if range.upperBound < Int.max { return String(range.upperBound + 1) }
            if range.lowerBound > Int.min { return String(range.lowerBound - 1) }
            return nil
        case .choiceOrInteger(_, let range):
            return range.upperBound < Int.max ? String(range.upperBound + 1) : nil
        case .number(let range?):
            return number(range.upperBound * 2 + 1)
        default:
            return nil
        }
    }

    static func argument(_ positional: Positional, _ value: String) -> String {
        (positional.keyword.map { $0 + " " } ?? "") + value
    }

    /// Required positionals with valid values, one of them replaced when asked.
    static func positionals(of spec: CommandSpec, replacing name: String? = nil, with value: String? = nil) -> [String] {
        spec.positionals.compactMap { positional in
            if positional.name == name, let value { return argument(positional, value) }
            guard !positional.isOptional, let good = valid(positional.type) else { return nil }
            return argument(positional, good)
        }
    }

    static func statement(_ spec: CommandSpec, _ parts: [String]) -> String {
        ([spec.name] + parts).joined(separator: " ")
    }

    /// The bad-argument cases of every command.
    static func cases(_ registry: CommandRegistry = .standard) -> [Case] {
        var cases: [Case] = []
        for spec in registry.specs {
            func add(_ kind: String, _ parts: [String]) {
                cases.append(Case(kind: kind, command: spec.name, statement: statement(spec, parts)))
            }
            if spec.positionals.contains(where: { !$0.isOptional }) {
                add("missing argument", [])
            }
            for positional in spec.positionals where !positional.isVariadic {
                if let wrong = wrongType(positional.type) {
                    add("wrong type of \(positional.name)", positionals(of: spec, replacing: positional.name, with: wrong))
                }
                if let far = outOfRange(positional.type) {
                    add("\(positional.name) out of range", positionals(of: spec, replacing: positional.name, with: far))
                }
            }
            let required = positionals(of: spec)
            for option in spec.options {
                if let wrong = wrongType(option.type) {
                    add("wrong type of \(option.name)", required + ["\(option.name)=\(wrong)"])
                }
                if let far = outOfRange(option.type) {
                    add("\(option.name) out of range", required + ["\(option.name)=\(far)"])
                }
            }
            add("unknown option", required + ["bogus_option=1"])
        }
        return cases
    }

    /// `file:line:col: error: ...`, the line, and a caret under the place.
    static func assertLocated(_ errors: String, line: Int = 1, file: String = "test.qs", _ context: String,
                              sourceFile: StaticString = #filePath, sourceLine: UInt = #line) {
        let lines = errors.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let head = lines.first { $0.hasPrefix("\(file):\(line):") && $0.contains(": error: ") }
        XCTAssertNotNil(head, "\(context): no located error:\n\(errors)", file: sourceFile, line: sourceLine)
        let caret = lines.contains { line in
            let trimmed = line.drop { $0 == " " || $0 == "\t" }
            return trimmed.first == "^" && trimmed.dropFirst().allSatisfy { $0 == "~" }
        }
        XCTAssertTrue(caret, "\(context): no caret line:\n\(errors)", file: sourceFile, line: sourceLine)
        XCTAssertFalse(errors.contains("Fatal error"), "\(context): crashed:\n\(errors)", file: sourceFile, line: sourceLine)
    }

    override func setUpWithError() throws {
        try FileManager.default.createDirectory(at: Self.scratch, withIntermediateDirectories: true)
    }

    override func tearDown() {
        try? FileManager.default.removeItem(at: Self.scratch)
    }

    func testMatrixCoversEveryCommand() {
        let cases = Self.cases()
        let covered = Set(cases.map(\.command))
        for spec in CommandRegistry.standard.specs {
            XCTAssertTrue(covered.contains(spec.name), "no bad-input case for '\(spec.name)'")
        }
        XCTAssertGreaterThan(cases.count, 3 * CommandRegistry.standard.specs.count, "\(cases.count) cases")
        print("bad-input matrix: \(cases.count) cases over \(covered.count) commands")
    }

    func testEveryBadArgumentFailsLocatedInAScript() {
        for item in Self.cases() {
            let harness = RecipeHarness()
            harness.session.settings.allowDownload = false
            harness.session.settings.progress = false
            let status = harness.run(item.statement)
            let context = "\(item.kind): \(item.statement)"
            XCTAssertEqual(status, .recipeFailed, "\(context) was accepted:\n\(harness.output.text)")
            Self.assertLocated(harness.errors.text, context)
            XCTAssertTrue(harness.errors.text.contains("hint: "), "\(context): no hint:\n\(harness.errors.text)")
            // 'qsh check' finds the same mistake without running anything.
            let checker = RecipeHarness()
            XCTAssertEqual(checker.check(item.statement), .recipeFailed, "qsh check accepted \(context)")
            Self.assertLocated(checker.errors.text, "check: " + context)
        }
    }

    /// Hashes every tensor of the model's state dict, names and shapes included.
    static func fingerprint(_ session: Session) -> UInt64 {
        guard let model = session.current?.model else { return 0 }
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        func mix(_ value: UInt64) {
            hash ^= value
            hash = hash &* 0x0000_0100_0000_01B3
        }
        let dict = model.stateDict()
        for key in dict.keys {
            for byte in key.utf8 { mix(UInt64(byte)) }
            guard let entry = dict[key] else { continue }
            for size in entry.tensor.shape { mix(UInt64(size)) }
            for value in entry.tensor.data { mix(UInt64(value.bitPattern)) }
        }
        return hash
    }

    func testBadArgumentsInTheReplLeaveTheModelAndUndo() throws {
        let harness = try PTQCommandTests.makeHarness()
        XCTAssertEqual(harness.run("load resnet20"), .success, harness.errors.text)
        let loaded = Self.fingerprint(harness.session)
        XCTAssertEqual(harness.run("fold bn"), .success, harness.errors.text)
        let folded = Self.fingerprint(harness.session)
        XCTAssertNotEqual(loaded, folded)
        let steps = harness.session.current?.steps
        let undoDepth = harness.session.models.undoStack.count

        let cases = Self.cases()
        let reader = ReplTests.ScriptedReader(cases.map(\.statement) + ["print \"still here\""])
        harness.errors.clear()
        harness.output.clear()
        Repl(interpreter: Interpreter(session: harness.session), reader: reader).run()
        XCTAssertTrue(harness.output.text.contains("still here"), harness.output.text)
        let reported = harness.errors.text.components(separatedBy: "\n").filter { $0.hasPrefix("<input ") && $0.contains(": error: ") }
        XCTAssertEqual(reported.count, cases.count, "every bad line gives one located error:\n\(harness.errors.text)")
        XCTAssertEqual(Self.fingerprint(harness.session), folded, "a bad line changed the weights")
        XCTAssertEqual(harness.session.current?.steps, steps)
        XCTAssertEqual(harness.session.models.undoStack.count, undoDepth)

        let undo = ReplTests.ScriptedReader(["undo"])
        Repl(interpreter: Interpreter(session: harness.session), reader: undo).run()
        XCTAssertEqual(harness.session.current?.steps, [])
        XCTAssertEqual(Self.fingerprint(harness.session), loaded, "undo after the bad lines restores the loaded weights")
    }

    /// Commands that have something to do without a model.
    static let workWithoutModel: Set<String> = [
        "load", "load data", "help", "print", "echo", "set", "source", "history", "history save", "results", "report",
        "plot results",
    ]

    func testModelCommandsWithoutAModelSayWhatToDoFirst() throws {
        for spec in CommandRegistry.standard.specs where !Self.workWithoutModel.contains(spec.name) {
            let harness = RecipeHarness()
            harness.session.settings.allowDownload = false
            harness.session.settings.progress = false
            let statement = Self.statement(spec, Self.positionals(of: spec))
            XCTAssertEqual(harness.run("print 1\n" + statement), .recipeFailed, "\(statement) ran without a model")
            Self.assertLocated(harness.errors.text, line: 2, statement)
            XCTAssertTrue(harness.errors.text.contains("hint: "), "\(statement): no remedy:\n\(harness.errors.text)")
        }
    }

    func testCommandsInTheWrongOrderNameTheStepBefore() throws {
        let wrongOrder: [(recipe: String, remedy: String)] = [
            ("calibrate", "quantize activations"),
            ("finetune ait", "ternary"),
            ("compensate dfmpc", "ternary"),
            ("analyze samples=8", "quantize"),
            ("biascorrect", "quantize weights"),
            ("plot analysis to \"\(Self.scratch.path)/a.svg\"", "analyze"),
            ("plot updates to \"\(Self.scratch.path)/u.svg\"", "finetune ait"),
            ("restore nosuch", "snapshot"),
            ("save data distilled to \"\(Self.scratch.path)/d.bin\"", "distill"),
            ("finetune ait resume=true", "finetune ait"),
        ]
        for (recipe, remedy) in wrongOrder {
            let harness = try PTQCommandTests.makeHarness()
            XCTAssertEqual(harness.run("load resnet20\nfold bn"), .success, harness.errors.text)
            let before = Self.fingerprint(harness.session)
            XCTAssertEqual(harness.run("print 1\n" + recipe), .recipeFailed, "\(recipe) ran: \(harness.output.text)")
            Self.assertLocated(harness.errors.text, line: 2, recipe)
            XCTAssertTrue(harness.errors.text.contains(remedy), "\(recipe): the error should name '\(remedy)':\n\(harness.errors.text)")
            XCTAssertEqual(Self.fingerprint(harness.session), before, "\(recipe) changed the model")
        }
    }

    func testTruncatedFilesNameTheFileAndTheRecord() throws {
        let harness = try PTQCommandTests.makeHarness()
        let checkpoint = Self.scratch.appendingPathComponent("model.safetensors")
        XCTAssertEqual(harness.run("load resnet20\nsave \"\(checkpoint.path)\""), .success, harness.errors.text)
        let whole = try Data(contentsOf: checkpoint)
        try whole.prefix(whole.count / 2).write(to: checkpoint)
        harness.errors.clear()
        XCTAssertEqual(harness.run("load resnet20 from \"\(checkpoint.path)\""), .recipeFailed)
        Self.assertLocated(harness.errors.text, "truncated checkpoint")
        XCTAssertTrue(harness.errors.text.contains("model.safetensors"), harness.errors.text)
        XCTAssertTrue(harness.errors.text.contains("tensor `"), "names the tensor cut off: \(harness.errors.text)")

        let data = Self.scratch.appendingPathComponent("images.bin")
        try Data(repeating: 1, count: 3073 * 3 + 100).write(to: data)
        harness.errors.clear()
        XCTAssertEqual(harness.run("load data \"\(data.path)\" as mine"), .recipeFailed)
        Self.assertLocated(harness.errors.text, "truncated data")
        XCTAssertTrue(harness.errors.text.contains(data.path), harness.errors.text)
        XCTAssertTrue(harness.errors.text.contains("record 3 (from byte 9219) has only 100 bytes"), harness.errors.text)

        try Data([11] + [UInt8](repeating: 0, count: 3072)).write(to: data)
        harness.errors.clear()
        XCTAssertEqual(harness.run("load data \"\(data.path)\" as mine"), .recipeFailed)
        XCTAssertTrue(harness.errors.text.contains("record 0 has label 11"), harness.errors.text)
    }

    /// `save`, `save data`, `report to` and `history save` into a path under a regular file: a
    /// located error that names the path and the reason, and nothing written.
    func testWritesThatCannotHappenNameThePath() throws {
        let harness = try PTQCommandTests.makeHarness()
        let images = Self.scratch.appendingPathComponent("images.bin")
        try Data(repeating: 1, count: 3073 * 2).write(to: images)
        let blocker = Self.scratch.appendingPathComponent("blocker")
        try Data("a regular file".utf8).write(to: blocker)
        XCTAssertEqual(harness.run("load resnet20\nload data \"\(images.path)\" as mine"), .success, harness.errors.text)
        for (statement, path) in [("save \"\(blocker.path)/m.safetensors\"", "m.safetensors"),
                                  ("save data mine to \"\(blocker.path)/d.bin\"", "\(blocker.path)/d.bin"),
                                  ("report to \"\(blocker.path)/r.json\"", "\(blocker.path)/r.json"),
                                  ("history save \"\(blocker.path)/h.qs\"", "\(blocker.path)/h.qs")] {
            harness.errors.clear()
            XCTAssertEqual(harness.run("print 1\n" + statement), .recipeFailed, statement)
            Self.assertLocated(harness.errors.text, line: 2, statement)
            XCTAssertTrue(harness.errors.text.contains(path), "\(statement): names the path: \(harness.errors.text)")
            XCTAssertTrue(harness.errors.text.contains("Not a directory"), "\(statement): \(harness.errors.text)")
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: Self.scratch.path).sorted(), ["blocker", "images.bin"])
    }
}
