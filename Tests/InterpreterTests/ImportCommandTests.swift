import Foundation
import Interpreter
import QLang
import QuantOps
import XCTest

/// `load` of ONNX files and standard-architecture checkpoints through the recipe language, and
/// the commands that follow on the imported graphs.
final class ImportCommandTests: XCTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("QuantOpsTests/Fixtures")

    func harness() -> RecipeHarness {
        let harness = RecipeHarness()
        harness.session.settings.allowDownload = false
        harness.session.settings.modelsDirectory = Self.fixtures.appendingPathComponent("onnx").path
        return harness
    }

    func testONNXModelLoadsNamedAfterItsFileAndRunsQuantizationCommands() throws {
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("import-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: scratch) }
        let harness = harness()
        // A bare file name is found in the models directory.
        let recipe = """
            load "squeezeexcite.onnx" mean=0.5 std=0.25
            layers
            fold bn
            quantize weights bits=6
            mixed dfmpc low=4 high=8
            export onnx "\(scratch.path)/se.onnx"
            save "\(scratch.path)/se.safetensors"
            """
        XCTAssertEqual(harness.check(recipe), .success, harness.errors.text)
        let result = harness.run(recipe)
        let output = harness.output.text
        XCTAssertTrue(output.contains("loaded squeezeexcite from"), output)
        XCTAssertTrue(output.contains("ONNX opset 18, input 3x32x32"), output)
        XCTAssertTrue(output.contains("normalization as given"), output)
        XCTAssertEqual(harness.session.current?.model.normalization.std, [0.25, 0.25, 0.25])
        // mixed dfmpc refuses a model already quantized: the error names the layer, nothing is half-done.
        XCTAssertNotEqual(result, .success)
        XCTAssertTrue(harness.errors.text.contains("is already quantized"), harness.errors.text)
    }

    func testONNXErrorsNameTheNodeAndTheFix() throws {
        let harness = harness()
        let bad = FileManager.default.temporaryDirectory.appendingPathComponent("bad-\(UUID().uuidString).onnx")
        try Data("not a model".utf8).write(to: bad)
        addTeardownBlock { try? FileManager.default.removeItem(at: bad) }
        XCTAssertNotEqual(harness.run("load m from \"\(bad.path)\""), .success)
        XCTAssertTrue(harness.errors.text.contains("is not an ONNX model"), harness.errors.text)
        XCTAssertNil(harness.session.current)
        let missing = harness.run("load m from \"nowhere.onnx\"")
        XCTAssertNotEqual(missing, .success)
        XCTAssertTrue(harness.errors.text.contains("models directory"), harness.errors.text)
        XCTAssertNotEqual(harness.run("load m from \"resnet18.onnx\" mean=0.5"), .success)
        XCTAssertTrue(harness.errors.text.contains("mean= and std= go together"), harness.errors.text)
        XCTAssertNotEqual(harness.run("load resnet20 from \"x.th\" size=224"), .success)
        XCTAssertTrue(harness.errors.text.contains("size= describes an ONNX graph"), harness.errors.text)
    }

    func testStandardArchitectureCheckpointsAreRecognised() throws {
        let harness = harness()
        let file = Self.fixtures.appendingPathComponent("architectures/resnet50.pth").path
        XCTAssertEqual(harness.run("load backbone from \"\(file)\"\nmixed dfmpc"), .success, harness.errors.text)
        XCTAssertTrue(harness.output.text.contains("(resnet50, input 3x224x224)"), harness.output.text)
        XCTAssertTrue(harness.output.text.contains("layer1.0.conv2 -> layer1.0.conv3"), harness.output.text)
        XCTAssertNotEqual(harness.run("load resnet18 from \"\(file)\""), .success)
        XCTAssertTrue(harness.errors.text.contains("holds a resnet50, not a resnet18"), harness.errors.text)
        XCTAssertNotEqual(harness.run("load resnet18"), .success)
        XCTAssertTrue(harness.errors.text.contains("load resnet18 from \"resnet18.pth\""), harness.errors.text)
    }
}
