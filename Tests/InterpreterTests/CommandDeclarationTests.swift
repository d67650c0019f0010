import Foundation
import Interpreter
import QLang
import QuantOps
import XCTest

/// A command's declaration is the one place for its parameters: the binder fills declared
/// defaults, checks choices, and help shows the same; every help example binds.
final class CommandDeclarationTests: XCTestCase {
    /// Runs `text` through check mode (parsed and bound, nothing run) in a fresh session.
    static func check(_ text: String, registry: CommandRegistry = .standard) -> (status: ExitStatus, errors: String) {
        let output = CapturedOutput()
        let errors = CapturedOutput()
        let session = Session(registry: registry, output: output, errors: errors)
        // Examples are fragments of recipes: a `$name` they use was set earlier.
        for name in variables(in: text) { session.variables[name] = .number(0.5) }
        let status = RecipeRunner(session: session).run(text: text, fileName: "example.qs", checkOnly: true)
        return (status, errors.text)
    }

    /// The `$name` and `${name}` references in a text.
    static func variables(in text: String) -> Set<String> {
        var names = Set<String>()
        var rest = Substring(text)
        while let dollar = rest.firstIndex(of: "$") {
            rest = rest[rest.index(after: dollar)...]
            if rest.first == "{" { rest = rest.dropFirst() }
            let name = rest.prefix { $0.isLetter || $0.isNumber || $0 == "_" }
            if !name.isEmpty { names.insert(String(name)) }
            rest = rest.dropFirst(name.count)
        }
        return names
    }

    /// Each help example of the registry that does not bind, with its error.
    static func unboundExamples(of registry: CommandRegistry) -> [String] {
        registry.specs.flatMap { spec in
            spec.examples.compactMap { example -> String? in
                let result = check(example, registry: registry)
                return result.status == .success ? nil : "'\(spec.name)' example '\(example)':\n\(result.errors)"
            }
        }
    }

    func testEveryHelpExampleBindsInCheckMode() {
        let registry = CommandRegistry.standard
        let examples = registry.specs.reduce(0) { $0 + $1.examples.count }
        XCTAssertGreaterThan(examples, registry.specs.count, "the registry should carry examples")
        let failures = Self.unboundExamples(of: registry)
        XCTAssertTrue(failures.isEmpty, "help examples that do not bind:\n" + failures.joined(separator: "\n"))
    }

    /// The check above catches an example that a declaration no longer accepts.
    func testAnExampleThatDoesNotBindIsReported() {
        var broken = probeSpec()
        broken.examples = ["probe method=minmax", "probe method=median", "probe strength=2"]
        let registry = CommandRegistry(CommandRegistry.standard.specs + [broken])
        let failures = Self.unboundExamples(of: registry)
        XCTAssertEqual(failures.count, 2, failures.joined(separator: "\n"))
        XCTAssertTrue(failures.contains { $0.contains("probe method=median") && $0.contains("method expects one of minmax, ema, percentile") },
                      failures.joined(separator: "\n"))
        XCTAssertTrue(failures.contains { $0.contains("unknown option 'strength'") }, failures.joined(separator: "\n"))
    }

    /// A stand-in command with a choice, a default and a positional default, printing what it decoded.
    func probeSpec(run: (@Sendable (Invocation, Session) throws -> Void)? = nil) -> CommandSpec {
        CommandSpec(
            ["probe"], group: .session, summary: "Print decoded arguments",
            positionals: [Positional("count", .integer(1...9), default: .integer(3), help: "how many")],
            options: [
                OptionParameter("method", .choice(["minmax", "ema", "percentile"]), default: .word("minmax"), help: "estimator"),
                OptionParameter("lambda", .number(0...1), default: .number(0.25), help: "weight"),
                OptionParameter("limit", .integer(1...100), help: "optional, no default"),
            ],
            run: run ?? { invocation, session in
                session.output.line("count=\(try invocation.int("count")) set=\(invocation.isSet("count")) "
                                    + "method=\(try invocation.string("method")) lambda=\(try invocation.double("lambda")) "
                                    + "limit=\(invocation.optionalInt("limit").map(String.init) ?? "none")")
            })
    }

    func harness(with spec: CommandSpec) -> RecipeHarness {
        let harness = RecipeHarness(registry: CommandRegistry(CommandRegistry.standard.specs + [spec]))
        harness.session.settings.progress = false
        return harness
    }

    func testDeclaredDefaultsAreWhatTheCommandReadsAndWhatHelpShows() {
        let harness = harness(with: probeSpec())
        XCTAssertEqual(harness.run("probe"), .success, harness.errors.text)
        XCTAssertEqual(harness.output.text, "count=3 set=false method=minmax lambda=0.25 limit=none\n")
        harness.output.clear()
        XCTAssertEqual(harness.run("probe 5 method=ema lambda=0.5 limit=7"), .success, harness.errors.text)
        XCTAssertEqual(harness.output.text, "count=5 set=true method=ema lambda=0.5 limit=7\n")
        harness.output.clear()
        XCTAssertEqual(harness.run("help probe"), .success, harness.errors.text)
        let help = harness.output.text
        XCTAssertTrue(help.contains("how many (default 3)"), help)
        XCTAssertTrue(help.contains("estimator (default minmax)"), help)
        XCTAssertTrue(help.contains("weight (default 0.25)"), help)
        XCTAssertFalse(help.contains("optional, no default (default"), help)
    }

    /// The real commands: help states the defaults their declarations give.
    func testHelpOfRealCommandsShowsTheirDeclaredDefaults() {
        let harness = RecipeHarness()
        XCTAssertEqual(harness.run("help calibrate\nhelp undo\nhelp eval\nhelp load data\nhelp mixed dfmpc"), .success, harness.errors.text)
        let help = harness.output.text
        for expected in ["method=minmax|ema|percentile|meanstd|entropy", "range estimator (default minmax)",
                         "ema: weight of the running value (default 0.9)", "how many changes to undo (default 1)",
                         "resized to this many pixels (default 256)", "the center crop's side (default 224)",
                         "antialiased as in torchvision (default bilinear)", "the data set's name (default distilled)",
                         "low=ternary|binary|1..8", "precision of each block's first conv (default ternary)"] {
            XCTAssertTrue(help.contains(expected), "'\(expected)' missing from:\n\(help)")
        }
    }

    /// Every declared default is a value of its own type: the binder checks it like a written one.
    func testEveryDeclaredDefaultOfTheRegistryBinds() {
        for spec in CommandRegistry.standard.specs {
            let required = spec.positionals.filter { !$0.isOptional }.map { positional in
                (positional.keyword.map { $0 + " " } ?? "") + (BadInputMatrixTests.valid(positional.type) ?? "1")
            }
            let statement = ([spec.name] + required).joined(separator: " ")
            let result = Self.check(statement)
            XCTAssertEqual(result.status, .success, "\(statement): \(result.errors)")
        }
    }

    func testADefaultOutsideItsDeclaredChoicesFailsEveryStatement() {
        let spec = CommandSpec(["probe"], group: .session, summary: "x",
                               options: [OptionParameter("method", .choice(["minmax", "ema"]), default: .word("median"), help: "estimator")]) { _, _ in }
        let registry = CommandRegistry(CommandRegistry.standard.specs + [spec])
        let result = Self.check("probe", registry: registry)
        XCTAssertEqual(result.status, .recipeFailed)
        XCTAssertTrue(result.errors.contains("method (its declared default) expects one of minmax, ema, got a word 'median'"), result.errors)
    }

    /// An unknown choice is an error at the value, naming the valid choices; nothing falls back.
    func testUnknownChoiceIsAnErrorNamingThePlaceAndTheChoices() {
        let cases: [(statement: String, column: Int, expected: String)] = [
            ("calibrate method=median", 18, "method expects one of minmax, ema, percentile, meanstd, entropy, got a word 'median'"),
            ("calibrate method=\"entropi\"", 18, "did you mean 'entropy'?"),
            ("quantize weights scheme=dorefa", 25, "scheme expects one of symmetric, asymmetric, got a word 'dorefa'"),
            ("mixed dfmpc low=quaternary", 17, "low expects one of ternary, binary or an integer in 1...8, got a word 'quaternary'"),
            ("distill from=teacher", 14, "from expects one of current, float, got a word 'teacher'"),
            ("analyze order=worst", 15, "order expects one of model, sorted"),
            ("plot results to \"x.svg\" metric=top3", 32, "metric expects one of top1, top5"),
            ("eval cifar10 engine=int4", 21, "engine expects one of float, int8"),
        ]
        for item in cases {
            for checkOnly in [false, true] {
                let harness = RecipeHarness()
                harness.session.settings.allowDownload = false
                let status = checkOnly ? harness.check(item.statement) : harness.run(item.statement)
                XCTAssertEqual(status, .recipeFailed, "\(item.statement) was accepted")
                XCTAssertTrue(harness.errors.text.contains("test.qs:1:\(item.column): error: "), "\(item.statement):\n\(harness.errors.text)")
                XCTAssertTrue(harness.errors.text.contains(item.expected), "\(item.statement):\n\(harness.errors.text)")
                XCTAssertEqual(harness.output.text, "", "\(item.statement) ran")
            }
        }
    }

    /// A declaration that lists a word its enumeration lacks is an error when the command decodes
    /// it, never a silent fallback to some other case.
    func testADeclaredWordTheEnumerationLacksIsAnErrorNotAFallback() {
        let spec = CommandSpec(["probe"], group: .session, summary: "x",
                               options: [OptionParameter("granularity", .choice(["tensor", "channel", "row"]), default: .choice(Granularity.tensor),
                                                         help: "g")]) { invocation, session in
            session.output.line("decoded \(try invocation.choice("granularity", as: Granularity.self).rawValue)")
        }
        let harness = harness(with: spec)
        XCTAssertEqual(harness.run("probe granularity=channel"), .success, harness.errors.text)
        XCTAssertEqual(harness.output.text, "decoded channel\n")
        XCTAssertEqual(harness.run("probe granularity=row"), .recipeFailed)
        XCTAssertTrue(harness.errors.text.contains("granularity=row is not one of tensor, channel, row"), harness.errors.text)
        XCTAssertFalse(harness.output.text.contains("decoded tensor"), harness.output.text)
    }

    /// Reading a parameter declared without a default as if it always had one is an error that
    /// names the declaration, not a made-up value.
    func testANonOptionalReadOfAnUndefaultedParameterIsAnError() {
        let spec = probeSpec { invocation, session in
            session.output.line("limit \(try invocation.int("limit"))")
        }
        let harness = harness(with: spec)
        XCTAssertEqual(harness.run("probe limit=4"), .success, harness.errors.text)
        XCTAssertEqual(harness.output.text, "limit 4\n")
        XCTAssertEqual(harness.run("probe"), .recipeFailed)
        XCTAssertTrue(harness.errors.text.contains("'probe' has no value for 'limit'"), harness.errors.text)
    }
}

/// `reset`, `restore` and `undo` go through the session's model history, which keeps at most
/// `ModelHistory.undoDepth` earlier states whichever command adds them.
final class ModelHistoryTests: XCTestCase {
    static func tinyModel(_ value: Float = 1) -> Model {
        let linear = Linear(weight: Tensor(repeating: value, shape: [2, 3]))
        return Model(name: "tiny", nodes: [Node(name: "fc", operation: .linear(linear), inputs: [-1])],
                     normalization: Normalization(mean: [0, 0, 0], std: [1, 1, 1]), inputShape: [3])
    }

    func testCommitMoveAndUndoKeepTheDepthLimit() throws {
        var history = ModelHistory()
        history.install(ModelState(model: Self.tinyModel(), origin: "tiny"))
        for step in 1...(ModelHistory.undoDepth + 6) {
            history.commit(Self.tinyModel(Float(step)), step: "step \(step)")
        }
        XCTAssertEqual(history.undoStack.count, ModelHistory.undoDepth)
        let loaded = try XCTUnwrap(history.loaded)
        for _ in 0..<10 { history.move(to: loaded) }
        XCTAssertEqual(history.undoStack.count, ModelHistory.undoDepth)
        try history.undo(3)
        XCTAssertEqual(history.undoStack.count, ModelHistory.undoDepth - 3)
        XCTAssertThrowsError(try history.undo(ModelHistory.undoDepth)) { error in
            XCTAssertEqual((error as? CommandError)?.message, "only \(ModelHistory.undoDepth - 3) changes can be undone")
        }
        XCTAssertEqual(history.undoStack.count, ModelHistory.undoDepth - 3, "a refused undo changes nothing")
        history.install(loaded)
        XCTAssertTrue(history.undoStack.isEmpty)
    }

    func testResetAndRestoreRespectTheUndoDepth() throws {
        let harness = RecipeHarness()
        harness.session.install(ModelState(model: Self.tinyModel(), origin: "tiny"))
        let resets = Array(repeating: "reset", count: ModelHistory.undoDepth + 10).joined(separator: "\n")
        XCTAssertEqual(harness.run(resets), .success, harness.errors.text)
        XCTAssertEqual(harness.session.models.undoStack.count, ModelHistory.undoDepth)

        let restores = "snapshot start\n" + Array(repeating: "restore start", count: ModelHistory.undoDepth + 10).joined(separator: "\n")
        XCTAssertEqual(harness.run(restores), .success, harness.errors.text)
        XCTAssertEqual(harness.session.models.undoStack.count, ModelHistory.undoDepth)
        XCTAssertEqual(harness.session.models.snapshots["start"]?.origin, "tiny")

        XCTAssertEqual(harness.run("undo 64"), .success, harness.errors.text)
        XCTAssertTrue(harness.session.models.undoStack.isEmpty)
        XCTAssertEqual(harness.run("undo"), .recipeFailed)
        XCTAssertTrue(harness.errors.text.contains("nothing to undo"), harness.errors.text)
    }

    /// `undo` without a count steps back once: the declared default.
    func testUndoStepsBackOnceByDefault() throws {
        let harness = RecipeHarness()
        harness.session.install(ModelState(model: Self.tinyModel(), origin: "tiny"))
        harness.session.commit(Self.tinyModel(2), step: "first")
        harness.session.commit(Self.tinyModel(3), step: "second")
        XCTAssertEqual(harness.run("undo"), .success, harness.errors.text)
        XCTAssertEqual(harness.session.current?.steps, ["first"])
        XCTAssertEqual(harness.output.text, "now: tiny | first\n")
    }
}
