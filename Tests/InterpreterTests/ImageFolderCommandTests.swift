import Foundation
import Interpreter
import QLang
import QuantOps
import XCTest

/// `eval imagefolder "DIR"` and `data="imagefolder:DIR"` through the recipe language.
final class ImageFolderCommandTests: XCTestCase {
    static let pngFixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("QuantOpsTests/Fixtures/imagefolder")

    func harness() throws -> RecipeHarness {
        let models = ProcessInfo.processInfo.environment["QSH_MODELS"] ?? DistillCommandTests.shared.appendingPathComponent("models").path
        guard FileManager.default.fileExists(atPath: models + "/resnet20-12fca82f.th") else {
            throw XCTSkip("resnet20 checkpoint not found in \(models)")
        }
        let harness = RecipeHarness()
        harness.session.settings.modelsDirectory = models
        harness.session.settings.allowDownload = false
        return harness
    }

    /// Two classes of three PNG images each, and one file that is not an image.
    func makeFolder() throws -> URL {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("eval-imagefolder-\(UUID().uuidString)")
        addTeardownBlock { try? FileManager.default.removeItem(at: root) }
        let images = ["rgb-40x30.png", "la-17x23.png", "palette-97x61.png"]
        for (label, folder) in ["cats", "dogs"].enumerated() {
            try FileManager.default.createDirectory(at: root.appendingPathComponent(folder), withIntermediateDirectories: true)
            for (index, image) in images.enumerated() {
                try FileManager.default.copyItem(at: Self.pngFixtures.appendingPathComponent(image),
                                                 to: root.appendingPathComponent("\(folder)/\(label)-\(index).png"))
            }
        }
        try Data("not a jpeg".utf8).write(to: root.appendingPathComponent("dogs/broken.jpg"))
        return root
    }

    func testEvalImageFolderCountsImagesAndWarnsAboutUnreadableFiles() throws {
        let harness = try harness()
        let root = try makeFolder()
        let recipe = """
            load resnet20
            eval imagefolder "\(root.path)" resize=36 crop=32 batch=4
            recalibrate bn data="imagefolder:\(root.path)" samples=4 batch=2
            eval cifar10 limit=10 logits to "\(root.path)/logits.npy"
            """
        XCTAssertEqual(harness.check(recipe), .success, harness.errors.text)
        XCTAssertEqual(harness.run(recipe), .success, harness.errors.text)
        let line = try XCTUnwrap(harness.output.text.split(separator: "\n").first { $0.hasPrefix("top-1") })
        XCTAssert(line.contains("(6 images,"), String(line))
        let top1 = try XCTUnwrap(line.split(separator: " ").dropFirst().first.map { String($0.dropLast()) })
        XCTAssertNotNil(Double(top1), String(line))
        XCTAssertEqual(harness.session.values["images"], 10)
        XCTAssert(harness.errors.text.contains("skipped 1 of 7 image files"), harness.errors.text)
        XCTAssert(harness.errors.text.contains("broken.jpg"), harness.errors.text)
        // The folder is read once, with the options eval gave, and reused by data=.
        let dataset = try XCTUnwrap(harness.session.datasets["imagefolder:\(root.path)"] as? ImageFolder)
        XCTAssertEqual(dataset.options.preprocessing, ImagePreprocessing(resize: 36, crop: 32))
    }

    func testStrictAndMissingFoldersAreLocatedErrorsWithHints() throws {
        let harness = try harness()
        let root = try makeFolder()
        XCTAssertNotEqual(harness.run("load resnet20\neval imagefolder \"/nonexistent\""), .success)
        XCTAssert(harness.errors.text.contains("test.qs:2:1"), harness.errors.text)
        XCTAssert(harness.errors.text.contains("/nonexistent: no such folder"), harness.errors.text)
        XCTAssert(harness.errors.text.contains("hint:"), harness.errors.text)
        harness.errors.clear()
        XCTAssertNotEqual(harness.run("eval imagefolder \"\(root.path)\" strict=true"), .success)
        XCTAssert(harness.errors.text.contains("broken.jpg"), harness.errors.text)
        harness.errors.clear()
        XCTAssertNotEqual(harness.run("eval cifar10 resize=36"), .success)
        XCTAssert(harness.errors.text.contains("resize= applies to image folders"), harness.errors.text)
    }
}
