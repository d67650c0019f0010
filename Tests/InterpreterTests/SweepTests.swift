import Foundation
import Interpreter
import QLang
import QuantOps
import XCTest

/// `sweep` blocks, `--shard i/N` and `qsh merge`'s merging of run records.
final class SweepTests: XCTestCase {
    func testEachItemStartsFromTheStateBeforeTheSweep() throws {
        let harness = RecipeHarness()
        let status = harness.run("""
            load resnet20
            let tag = "before"
            sweep bits in 3, 5 {
                quantize layer 2.. bits=$bits
                let tag = "inside"
                print "$tag ${bits}"
            }
            print $tag
            """)
        XCTAssertEqual(status, .success, harness.errors.text)
        let printed = harness.output.text.split(separator: "\n").filter { !$0.contains("dorefa") && !$0.hasPrefix("loaded") }
        XCTAssertEqual(printed, ["inside 3", "inside 5", "before"], harness.output.text)
        // The model is as loaded again, with nothing to undo, and the loop variable is gone.
        XCTAssertEqual(harness.session.current?.steps, [])
        XCTAssertTrue(harness.session.models.undoStack.isEmpty)
        XCTAssertNil(harness.session.variables["bits"])
        XCTAssertEqual(harness.session.sweep.items.map(\.index), [0, 1])
        XCTAssertEqual(harness.session.sweep.items.map(\.variables), [["bits": "3"], ["bits": "5"]])
    }

    func testShardRunsEveryNthItemCountedOverAllSweeps() throws {
        let harness = RecipeHarness()
        try harness.session.sweep.setShard("1/2")
        let status = harness.run("""
            sweep v in 10..14 { print "v $v" }
            print "between"
            sweep w in 1, 2 { print "w $w" }
            """)
        XCTAssertEqual(status, .success, harness.errors.text)
        let printed = harness.output.text.split(separator: "\n").filter { !$0.hasPrefix("sweep item") }
        // Items 0-4 are v, 5-6 are w: shard 1 of 2 takes items 1, 3 and 5.
        XCTAssertEqual(printed, ["v 11", "v 13", "between", "w 1"])
        XCTAssertEqual(harness.session.sweep.itemsStarted, 7)
        XCTAssertEqual(harness.session.sweep.items.map(\.index), [1, 3, 5])
    }

    func testAFailedItemIsRecordedAndTheOthersStillRun() {
        let harness = RecipeHarness()
        let status = harness.run("sweep v in 1, 2, 3 {\n    expect $v != 2\n}\nprint \"after\"")
        XCTAssertEqual(status, .recipeFailed)
        XCTAssertEqual(harness.output.text.components(separatedBy: ": ok").count - 1, 2, harness.output.text)
        XCTAssertFalse(harness.output.text.contains("after"))
        XCTAssertTrue(harness.errors.text.contains("test.qs:2:5: error: expectation failed"), harness.errors.text)
        XCTAssertTrue(harness.errors.text.contains("test.qs:1:1: error: sweep: 1 item failed: 1 (v=2)"), harness.errors.text)
        XCTAssertEqual(harness.session.sweep.items.map { $0.error == nil }, [true, false, true])
    }

    func testSweepOnlyAtTopLevelAndChecksLikeFor() {
        let harness = RecipeHarness()
        XCTAssertEqual(harness.run("for i in 1..2 {\n  sweep j in 1, 2 { print $j }\n}"), .recipeFailed)
        XCTAssertTrue(harness.errors.text.contains("test.qs:2:3: error: a `sweep` can only stand at the top level"), harness.errors.text)
        let checker = RecipeHarness()
        XCTAssertEqual(checker.check("sweep lam in 0.1, 0.2 { compensate dfmpc lambda=$lam }"), .success, checker.errors.text)
        XCTAssertEqual(checker.check("sweep lam in 0.1 { compensate dfmpc lamda=$lam }"), .recipeFailed)
        let program = try? Parser.parse(SourceFile(name: "p", text: "sweep x in 1..3 {\n    print $x\n}"))
        XCTAssertEqual(program.map { Printer.print($0) }, "sweep x in 1..3 {\n    print $x\n}")
    }

    func testCalibrationStatisticsAreSharedThroughTheStore() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("qsh-calibration-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let recipe = "load resnet20\nfold bn\nquantize weights\nquantize activations\ncalibrate samples=16 batch=8\neval cifar10 limit=40"
        func run() -> RecipeHarness {
            let harness = RecipeHarness()
            harness.session.quantization.calibrationStore = CalibrationStore(directory: directory)
            XCTAssertEqual(harness.run(recipe), .success, harness.errors.text)
            return harness
        }
        let first = run()
        XCTAssertTrue(first.output.text.contains("statistics gathered in"), first.output.text)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory.path).count, 1)
        let second = run()
        XCTAssertTrue(second.output.text.contains("cached statistics"), second.output.text)
        XCTAssertEqual(second.session.values["top1"], first.session.values["top1"])
        XCTAssertEqual(second.session.evaluations.map(\.top5), first.session.evaluations.map(\.top5))
    }

    // MARK: Merging

    static let recipe = """
        load resnet20
        eval cifar10 limit=60 shard=auto
        sweep bits in 3, 4, 6 {
            quantize layer 2.. bits=$bits
            eval cifar10 limit=60
        }
        eval cifar10 stride=500
        """

    /// The run record of `recipe` as shard `shard` (or unsharded) writes it.
    func record(shard: String?, recipe: String = SweepTests.recipe) throws -> SweepMerge.Input {
        let harness = RecipeHarness()
        if let shard { try harness.session.sweep.setShard(shard) }
        XCTAssertEqual(harness.run(recipe, file: "sweep.qs"), .success, harness.errors.text)
        let report = RunReport(session: harness.session, exitStatus: .success)
        return SweepMerge.Input(path: "shard-\(shard ?? "all").json", contents: try report.encoded())
    }

    func testMergedShardsEqualTheSequentialRunValueForValue() throws {
        let sequential = try SweepMerge([try record(shard: nil)])
        let shards = try ["0/3", "1/3", "2/3"].map { try record(shard: $0) }
        let merged = try SweepMerge(shards.reversed())
        XCTAssertTrue(merged.isComplete, merged.problems.joined(separator: "\n"))
        XCTAssertEqual(merged.evaluations.count, 5)
        XCTAssertEqual(merged.resultsTable, sequential.resultsTable)
        for (a, b) in zip(merged.evaluations, sequential.evaluations) {
            XCTAssertEqual(a.state, b.state)
            XCTAssertEqual(a.images, b.images)
            // Exact: parts of a data set are added as counts, then divided once.
            XCTAssertEqual(a.top1, b.top1)
            XCTAssertEqual(a.top5, b.top5)
        }
        XCTAssertEqual(merged.evaluations[0].images, 60)
        XCTAssertEqual(merged.evaluations.map(\.sweepItem), [nil, 0, 1, 2, nil])
        XCTAssertTrue(merged.evaluations[2].state.hasSuffix("quantize layer 2.. bits=4"), merged.evaluations[2].state)
    }

    func testMissingShardsAndBadFilesAreListedNotHidden() throws {
        let first = try record(shard: "0/3")
        let partial = try SweepMerge([first, SweepMerge.Input(path: "cut.json", contents: Data("{\"format\": \"qsh-ru".utf8))])
        XCTAssertFalse(partial.isComplete)
        let problems = partial.problems.joined(separator: "\n")
        XCTAssertTrue(problems.contains("cut.json: not a complete qsh run record"), problems)
        XCTAssertTrue(problems.contains("shards missing: 1, 2 of 3"), problems)
        XCTAssertTrue(problems.contains("missing data parts 1/3, 2/3"), problems)

        // Numbers no run writes: a shard index past the count, an impossible count.
        let text = String(decoding: first.contents, as: UTF8.self)
        let badShard = text.replacingOccurrences(of: "\"index\" : 0\n    }", with: "\"index\" : 7\n    }")
        XCTAssertNotEqual(badShard, text)
        let impossible = text.replacingOccurrences(of: "\"top1Correct\" : ", with: "\"top1Correct\" : -")
        let damaged = try SweepMerge([first, SweepMerge.Input(path: "seven.json", contents: Data(badShard.utf8)),
                                      SweepMerge.Input(path: "negative.json", contents: Data(impossible.utf8))])
        let listed = damaged.problems.joined(separator: "\n")
        XCTAssertTrue(listed.contains("seven.json: not a complete qsh run record (shard 7/3"), listed)
        XCTAssertTrue(listed.contains("negative.json: evaluation 1 has impossible counts"), listed)

        let otherRecipe = try record(shard: "1/3", recipe: SweepTests.recipe + "\nprint \"changed\"")
        XCTAssertThrowsError(try SweepMerge([first, otherRecipe])) { error in
            XCTAssertTrue("\(error)".contains("comes from another recipe"), "\(error)")
        }
        let otherCount = try record(shard: "1/2")
        XCTAssertThrowsError(try SweepMerge([first, otherCount])) { error in
            XCTAssertTrue("\(error)".contains("the shard counts differ"), "\(error)")
        }
        XCTAssertThrowsError(try SweepMerge([first, first])) { error in
            XCTAssertTrue("\(error)".contains("shard 0/3 appears twice"), "\(error)")
        }
    }
}
