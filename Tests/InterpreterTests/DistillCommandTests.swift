import Foundation
import Interpreter
import QLang
import QuantOps
import XCTest

/// `distill`, `save data` and `load data` through the recipe language, on the shared resnet20.
final class DistillCommandTests: XCTestCase {
    static let shared = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("shared")

    func harness() throws -> RecipeHarness {
        let models = ProcessInfo.processInfo.environment["QSH_MODELS"] ?? Self.shared.appendingPathComponent("models").path
        guard FileManager.default.fileExists(atPath: models + "/resnet20-12fca82f.th") else {
            throw XCTSkip("resnet20 checkpoint not found in \(models)")
        }
        let harness = RecipeHarness()
        harness.session.settings.modelsDirectory = models
        harness.session.settings.allowDownload = false
        return harness
    }

    func testDistillCreatesADataSetThatSaveAndLoadDataKeep() throws {
        let harness = try harness()
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("distilled-\(UUID().uuidString).bin")
        defer { try? FileManager.default.removeItem(at: file) }
        let status = harness.run("""
            load resnet20
            distill samples=4 steps=2 batch=4 seed=3
            save data distilled to "\(file.path)"
            load data "\(file.path)" as again
            """)
        XCTAssertEqual(status, .success, harness.errors.text)
        let distilled = try XCTUnwrap(harness.session.datasets["distilled"] as? CIFAR10)
        let again = try XCTUnwrap(harness.session.datasets["again"] as? CIFAR10)
        XCTAssertEqual(distilled.count, 4)
        XCTAssertEqual(again.pixels, distilled.pixels)
        XCTAssertEqual(again.labels, distilled.labels)
        XCTAssertEqual(try Data(contentsOf: file).count, 4 * CIFAR10.recordSize)
        XCTAssertTrue(harness.output.text.contains("distilled 4 images of 3x32x32 as 'distilled'"), harness.output.text)
        XCTAssertTrue(harness.errors.text.contains("distill step 2/2  loss "), harness.errors.text)
        XCTAssertNotNil(harness.session.values["distill_loss"])
        // `load` and `save` keep their own meaning beside the two-word forms.
        XCTAssertEqual(harness.session.current?.origin, "resnet20")
    }

    func testLabelsPriorsAndAugmentationsAreOptionsWithCheckedValues() throws {
        let harness = try harness()
        XCTAssertEqual(harness.run("load resnet20\ndistill samples=4 steps=2 batch=4 seed=3 ce=0.5 tv=0.1 l2=0.01 jitter=2 flip=true"),
                       .success, harness.errors.text)
        XCTAssertTrue(harness.output.text.contains("distilled 4 images of 3x32x32 as 'distilled' in "), harness.output.text)
        XCTAssertTrue(harness.output.text.contains(": loss "), "the summary names the combined loss: \(harness.output.text)")
        let tooFar = try self.harness()
        XCTAssertNotEqual(tooFar.run("load resnet20\ndistill samples=2 steps=1 jitter=32"), .success)
        XCTAssertTrue(tooFar.errors.text.contains("jitter 32 for 32x32 images"), tooFar.errors.text)
        let negative = try self.harness()
        XCTAssertNotEqual(negative.run("load resnet20\ndistill samples=2 steps=1 tv=-1"), .success)
    }

    func testSameSeedGivesTheSameImages() throws {
        let first = try harness(), second = try harness()
        for harness in [first, second] {
            XCTAssertEqual(harness.run("load resnet20\ndistill samples=2 steps=2 batch=2 seed=5"), .success, harness.errors.text)
        }
        XCTAssertEqual((first.session.datasets["distilled"] as? CIFAR10)?.pixels, (second.session.datasets["distilled"] as? CIFAR10)?.pixels)
    }

    func testDistilledDataWorksWhereADataSetNameGoes() throws {
        let harness = try harness()
        let status = harness.run("""
            load resnet20
            distill samples=8 steps=1 batch=8
            recalibrate bn data=distilled samples=8
            eval distilled
            ternary layer 3..
            analyze data=distilled samples=8
            quantize activations bits=8
            calibrate data=distilled samples=8
            """)
        XCTAssertEqual(status, .success, harness.errors.text)
        XCTAssertTrue(harness.output.text.contains("re-estimated 19 BN layers from 8 images"), harness.output.text)
        XCTAssertTrue(harness.output.text.contains("(8 images"), harness.output.text)
    }

    func testDistillingAQuantizedModelSaysToUseTheFloatOne() throws {
        let harness = try harness()
        XCTAssertEqual(harness.run("load resnet20\nternary layer 3..\ndistill samples=2 steps=1 batch=2"), .success, harness.errors.text)
        XCTAssertTrue(harness.errors.text.contains("note: 18 layers are quantized; distill from the float model"), harness.errors.text)
    }

    func testRefusesRealDataSetNamesAndUnreadableFiles() throws {
        let harness = RecipeHarness()
        XCTAssertEqual(harness.run("load data \"/nonexistent/file.bin\" as mine"), .recipeFailed)
        XCTAssertTrue(harness.errors.text.contains("no such file"), harness.errors.text)
        harness.errors.clear()
        XCTAssertEqual(harness.run("load data \"x.bin\" as cifar10"), .recipeFailed)
        XCTAssertTrue(harness.errors.text.contains("names a real data set"), harness.errors.text)
        harness.errors.clear()
        XCTAssertEqual(harness.run("save data distilled to \"x.bin\""), .recipeFailed)
        XCTAssertTrue(harness.errors.text.contains("unknown data set 'distilled'"), harness.errors.text)
        harness.errors.clear()
        XCTAssertEqual(harness.run("distill"), .recipeFailed)
        XCTAssertTrue(harness.errors.text.contains("needs a model"), harness.errors.text)
    }

    func testCommandWordsResolveToTheLongestMatch() throws {
        let registry = CommandRegistry.standard
        let location = SourceLocation(file: "test.qs", line: 1, column: 1)
        XCTAssertEqual(try registry.resolve("load", positionalWords: ["data"], at: location, wordLocations: []).0.name, "load data")
        XCTAssertEqual(try registry.resolve("load", positionalWords: ["resnet20"], at: location, wordLocations: []).0.name, "load")
        XCTAssertEqual(try registry.resolve("save", positionalWords: ["data"], at: location, wordLocations: []).0.name, "save data")
        XCTAssertEqual(try registry.resolve("save", positionalWords: [], at: location, wordLocations: []).0.name, "save")
    }
}
