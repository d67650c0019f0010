import Foundation
import Interpreter
import QuantOps
import XCTest

/// The post-training quantization commands through the recipe language, on the shared resnet20.
final class PTQCommandTests: XCTestCase {
    static let shared = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("shared")

    func harness() throws -> RecipeHarness { try Self.makeHarness() }

    /// A harness reading models and data from the shared folders, without progress bars.
    static func makeHarness() throws -> RecipeHarness {
        let environment = ProcessInfo.processInfo.environment
        let models = environment["QSH_MODELS"] ?? Self.shared.appendingPathComponent("models").path
        let data = environment["QSH_DATA"] ?? Self.shared.appendingPathComponent("data").path
        guard FileManager.default.fileExists(atPath: models + "/resnet20-12fca82f.th") else {
            throw XCTSkip("resnet20 checkpoint not found in \(models)")
        }
        let harness = RecipeHarness()
        harness.session.settings.modelsDirectory = models
        harness.session.settings.dataDirectory = data
        harness.session.settings.allowDownload = false
        harness.session.settings.progress = false
        return harness
    }

    func testCalibrationIsCachedAcrossMethodsAndRecomputedForNewWeights() throws {
        let harness = try harness()
        XCTAssertEqual(harness.run("""
            load resnet20
            fold bn
            quantize weights bits=8 scheme=symmetric granularity=channel
            quantize activations bits=8 scheme=asymmetric granularity=tensor
            calibrate data=cifar10 samples=16 method=minmax batch=8
            calibrate data=cifar10 samples=16 method=meanstd k=4
            calibrate data=cifar10 samples=16 method=ema momentum=0.9 batch=4
            """), .success, harness.errors.text)
        let lines = harness.output.text.split(separator: "\n").filter { $0.hasPrefix("calibrated") }
        XCTAssertEqual(lines.count, 3, harness.output.text)
        XCTAssertTrue(lines[0].contains("statistics gathered"), String(lines[0]))
        XCTAssertTrue(lines[1].contains("cached statistics"), String(lines[1]))
        XCTAssertTrue(lines[2].contains("cached statistics") && lines[2].contains("batch=4"), String(lines[2]))
        XCTAssertTrue(harness.output.text.contains("21 tensors"), harness.output.text)
        let model = try XCTUnwrap(harness.session.current?.model)
        let quantizers = ActivationQuantization.quantizers(in: model)
        XCTAssertEqual(quantizers.count, 21)
        XCTAssertTrue(quantizers.values.allSatisfy { $0.range != nil && $0.bits == 8 && $0.scheme == .asymmetric })
        XCTAssertTrue(model.weightLayers.allSatisfy { $0.precision.label == "8-bit symmetric/ch" })

        // New weights: the statistics no longer apply, so the model runs again.
        XCTAssertEqual(harness.run("quantize weights layer 3 bits=4\ncalibrate data=cifar10 samples=16"), .success, harness.errors.text)
        XCTAssertTrue(harness.output.text.split(separator: "\n").last?.contains("statistics gathered") ?? false, harness.output.text)
    }

    func testUncalibratedActivationsAndMissingQuantizersSayWhatToRun() throws {
        let harness = try harness()
        XCTAssertEqual(harness.run("load resnet20\nfold bn\ncalibrate data=cifar10 samples=8"), .recipeFailed)
        XCTAssertTrue(harness.errors.text.contains("quantize activations"), harness.errors.text)
        XCTAssertEqual(harness.run("quantize activations\neval cifar10 limit=4"), .recipeFailed)
        // QuantOps says the quantizer has no range; the shell adds the command that gives it one.
        XCTAssertTrue(harness.errors.text.contains("has no range yet; run 'calibrate' before 'eval'"), harness.errors.text)
        XCTAssertEqual(harness.run("biascorrect"), .recipeFailed)
        XCTAssertTrue(harness.errors.text.contains("quantize weights"), harness.errors.text)
    }

    /// clip=mse gives each channel the range with the least squared error: a lower mean relative
    /// error than the whole range on resnet20's 4-bit weights, on grids narrower than min/max.
    func testMSEClippedWeightsThroughARecipe() throws {
        let harness = try harness()
        XCTAssertEqual(harness.run("load resnet20\nquantize weights bits=4 scheme=asymmetric"), .success, harness.errors.text)
        let whole = try XCTUnwrap(harness.session.current?.model.weightLayers)
        XCTAssertEqual(harness.run("load resnet20\nquantize weights bits=4 scheme=asymmetric clip=mse"), .success, harness.errors.text)
        let clipped = try XCTUnwrap(harness.session.current?.model.weightLayers)
        let errors = harness.output.text.split(separator: "\n").filter { $0.hasPrefix("weights 4-bit") }
            .compactMap { line in line.split(separator: " ").last.flatMap { Double($0) } }
        XCTAssertEqual(errors.count, 2, harness.output.text)
        XCTAssertLessThan(errors[1], errors[0])
        XCTAssertTrue(harness.output.text.contains("weights 4-bit asymmetric per channel, MSE-clipped: 20 layers"), harness.output.text)
        for (before, after) in zip(whole, clipped) {
            guard case .uniform(_, _, let wide) = before.precision, case .uniform(_, _, let narrow) = after.precision else {
                return XCTFail("\(before.name) is not uniformly quantized")
            }
            XCTAssertTrue(zip(wide.scales, narrow.scales).allSatisfy { $1 <= $0 * 1.0001 }, before.name)
        }
        XCTAssertEqual(harness.run("quantize weights bits=4 clip=max"), .recipeFailed)
        XCTAssertTrue(harness.errors.text.contains("mse"), harness.errors.text)
    }

    func testKeepFloatRestoresWeightsAndRemovesQuantizers() throws {
        let harness = try harness()
        XCTAssertEqual(harness.run("""
            load resnet20
            fold bn
            quantize weights bits=4
            quantize activations
            keep layer 1, 20 float
            """), .success, harness.errors.text)
        var folded = try XCTUnwrap(harness.session.loaded?.model)
        try ModelTransforms.foldBatchNorm(&folded)
        let model = try XCTUnwrap(harness.session.current?.model)
        let layers = model.weightLayers
        XCTAssertEqual(layers[0].precision, .float32)
        XCTAssertEqual(layers[19].precision, .float32)
        XCTAssertTrue(layers[1].precision.isQuantized)
        guard case .conv(let first) = model.nodes[layers[0].nodeIndex].operation,
              case .conv(let original) = folded.nodes[folded.weightLayerNodes[0]].operation else { return XCTFail("layer 1 is not a conv") }
        XCTAssertEqual(first.weight, original.weight)
        // The network input and the stem's output lose their quantizers; the logits never had one.
        XCTAssertEqual(ActivationQuantization.quantizers(in: model).count, 19)
        // Later quantization leaves kept layers alone.
        XCTAssertEqual(harness.run("quantize weights bits=8"), .success, harness.errors.text)
        XCTAssertEqual(harness.session.current?.model.weightLayers[0].precision, .float32)
        XCTAssertTrue(harness.output.text.contains("kept float: 1, 20"), harness.output.text)
    }

    func testEqualizeBiasCorrectAndAnalyzeThroughARecipe() throws {
        let harness = try harness()
        XCTAssertEqual(harness.run("""
            load resnet20
            fold bn
            equalize
            quantize weights bits=4 granularity=tensor
            biascorrect
            quantize activations
            calibrate data=cifar10 samples=16 method=percentile p=99.99
            analyze data=cifar10 samples=8 order=sorted
            """), .success, harness.errors.text)
        let text = harness.output.text
        XCTAssertTrue(text.contains("equalized 9 conv pairs"), text)
        XCTAssertTrue(text.contains("bias-corrected"), text)
        XCTAssertTrue(text.contains("<- worst"), text)
        XCTAssertTrue(text.contains("<- adds the most noise"), text)
        let worst = try XCTUnwrap(harness.session.values["sqnr_min"])
        XCTAssertGreaterThan(worst, 0)
        XCTAssertNotNil(harness.session.quantization.lastAnalysis)
        // Sorted order: SQNR rises down the table.
        let sqnrs = try XCTUnwrap(harness.session.quantization.lastAnalysis).rows.map(\.sqnr).sorted()
        XCTAssertEqual(sqnrs.first, worst)
    }
    func testResetStartsTheFloatReferenceAndPriorsAfresh() throws {
        let fresh = try harness()
        XCTAssertEqual(fresh.run("load resnet20\nfold bn\nquantize weights bits=4\nbiascorrect"), .success, fresh.errors.text)
        let reused = try harness()
        XCTAssertEqual(reused.run("""
            load resnet20
            fold bn
            equalize
            quantize weights bits=4 granularity=tensor
            biascorrect
            reset
            fold bn
            quantize weights bits=4
            biascorrect
            """), .success, reused.errors.text)
        // An equalized reference or equalized priors left over would change the corrected biases.
        XCTAssertEqual(reused.session.current?.model, fresh.session.current?.model)
    }
}
