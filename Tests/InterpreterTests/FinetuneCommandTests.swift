import Foundation
import Interpreter
import QuantOps
import XCTest

/// `finetune ait` and `plot updates` through the recipe language, on the shared resnet20.
final class FinetuneCommandTests: XCTestCase {
    func harness() throws -> RecipeHarness {
        try PTQCommandTests.makeHarness()
    }

    static let quantizedW4A4 = """
        load resnet20
        distill samples=16 steps=2 batch=16 seed=1
        quantize weights bits=4 scheme=asymmetric granularity=channel
        quantize activations bits=4
        calibrate data=distilled samples=16 method=percentile
        """

    func testFinetuneReportsEachEpochResumesAndPlots() throws {
        let harness = try harness()
        let figure = FileManager.default.temporaryDirectory.appendingPathComponent("updates-\(UUID().uuidString).svg")
        defer { try? FileManager.default.removeItem(at: figure) }
        XCTAssertEqual(harness.run(Self.quantizedW4A4 + """

            finetune ait data=distilled epochs=2 lr=1e-4 rho=1e-3 momentum=0.9 batch=8 seed=0 eval=cifar10 stride=500
            finetune ait resume=true epochs=1 batch=8
            plot updates to "\(figure.path)"
            """), .success, harness.errors.text)
        let output = harness.output.text
        let epochs = output.split(separator: "\n").filter { $0.hasPrefix("epoch ") }
        XCTAssertEqual(epochs.count, 3, output)
        XCTAssertTrue(epochs[0].hasPrefix("epoch 1/2  loss "), String(epochs[0]))
        XCTAssertTrue(epochs[0].contains("rho 1e-03  kappa "), String(epochs[0]))
        XCTAssertTrue(epochs[0].contains("top-1 "), "eval=cifar10 adds a top-1: \(epochs[0])")
        XCTAssertTrue(epochs[2].hasPrefix("epoch 3/3  "), "resume continues the count: \(epochs[2])")
        XCTAssertTrue(output.contains("20 quantized layers re-quantized on their grids (20 with float masters from the teacher)"), output)
        XCTAssertNotNil(harness.session.values["finetune_kl"])
        XCTAssertEqual(harness.session.finetuning?.epochs.count, 3)
        // The committed model holds only grid values.
        let model = try XCTUnwrap(harness.session.current?.model)
        for info in model.weightLayers {
            guard case .conv(let conv) = model.nodes[info.nodeIndex].operation,
                  let grid = WeightGrid(precision: conv.precision, count: conv.weight.count, outputChannels: conv.outChannels) else { continue }
            XCTAssertEqual(grid.project(conv.weight.data), conv.weight.data, info.name)
        }
        let svg = try String(contentsOf: figure, encoding: .utf8)
        XCTAssertTrue(svg.contains("Integer weights changed per step") && svg.contains("epoch 3"), svg)
    }

    /// `samples=` draws its images with the run's seed: the KL at the start, over the drawn
    /// images and before any step, is the same for the same seed and differs for another, so a
    /// resumed round with a new seed trains on new images.
    func testSamplesAreDrawnWithTheRunsSeed() throws {
        let harness = try harness()
        XCTAssertEqual(harness.run(Self.quantizedW4A4 + """

            snapshot w4a4
            finetune ait data=distilled samples=4 epochs=1 batch=4 seed=1 inundation=false
            restore w4a4
            finetune ait data=distilled samples=4 epochs=1 batch=4 seed=2 inundation=false
            restore w4a4
            finetune ait data=distilled samples=4 epochs=1 batch=4 seed=1 inundation=false
            """), .success, harness.errors.text)
        let startingKL = harness.output.text.split(separator: "\n").filter { $0.hasPrefix("finetuned ") }.map { line -> String in
            let afterKL = line.components(separatedBy: ": KL ").last ?? ""
            return afterKL.components(separatedBy: " ->").first ?? ""
        }
        XCTAssertEqual(startingKL.count, 3, harness.output.text)
        XCTAssertEqual(startingKL[0], startingKL[2], "the same seed draws the same images")
        XCTAssertNotEqual(startingKL[0], startingKL[1], "another seed draws other images")
    }

    func testLossAndInundationOptionsAndErrors() throws {
        let harness = try harness()
        XCTAssertEqual(harness.run(Self.quantizedW4A4 + "\nfinetune ait epochs=1 batch=16 loss=kl+ce inundation=false"),
                       .success, harness.errors.text)
        let epoch = try XCTUnwrap(harness.output.text.split(separator: "\n").first { $0.hasPrefix("epoch ") })
        XCTAssertFalse(epoch.contains("kappa"), "without inundation there is no kappa: \(epoch)")

        harness.errors.clear()
        XCTAssertEqual(harness.run("finetune ait loss=mse"), .recipeFailed)
        XCTAssertTrue(harness.errors.text.contains("kl+ce"), harness.errors.text)
        harness.errors.clear()
        XCTAssertEqual(harness.run("undo\nfinetune ait resume=true"), .recipeFailed)
        XCTAssertTrue(harness.errors.text.contains("the model changed since the last 'finetune ait'"), harness.errors.text)
        harness.errors.clear()
        XCTAssertEqual(harness.run("finetune ait data=nothing"), .recipeFailed)
        XCTAssertTrue(harness.errors.text.contains("nothing"), harness.errors.text)
    }

    func testGDFQLossAndTernaryMastersThroughTheRecipe() throws {
        let harness = try harness()
        XCTAssertEqual(harness.run("""
            load resnet20
            distill samples=16 steps=2 batch=16 seed=1
            mixed dfmpc low=ternary high=6
            recalibrate bn data=distilled samples=16
            finetune ait epochs=1 batch=16 lr=1e-3 loss=gdfq delta=0.3 inundation=false
            """), .success, harness.errors.text)
        // The ternary layers' masters start inside their bins, not on the grid values.
        XCTAssertTrue(harness.output.text.contains("placed in their bins by the teacher's weights"), harness.output.text)
        harness.errors.clear()
        XCTAssertEqual(harness.run("finetune ait loss=gdfq delta=1.5"), .recipeFailed)
        XCTAssertTrue(harness.errors.text.contains("delta"), harness.errors.text)
    }

    func testFreshImagesComeFromTheFloatTeacher() throws {
        let harness = try harness()
        XCTAssertEqual(harness.run(Self.quantizedW4A4 + """

            distill samples=4 steps=1 batch=4 seed=9 from=float name=held
            finetune ait epochs=1 batch=16 validate=held
            distill samples=4 steps=1 batch=4 seed=2 from=float
            finetune ait resume=true epochs=1 batch=4
            """), .success, harness.errors.text)
        XCTAssertFalse(harness.errors.text.contains("layers are quantized"), harness.errors.text)
        XCTAssertEqual(harness.session.datasets["distilled"]?.count, 4)
        XCTAssertTrue(harness.output.text.contains("held-out KL "), harness.output.text)
        XCTAssertNotNil(harness.session.values["finetune_validation_kl"])
        XCTAssertTrue(harness.output.text.contains("epoch 2/2"), harness.output.text)
        harness.errors.clear()
        XCTAssertEqual(harness.run("distill samples=2 steps=1 batch=2"), .success, harness.errors.text)
        XCTAssertTrue(harness.errors.text.contains("with from=float"), harness.errors.text)
    }

    /// ranges=learned moves the calibrated activation ranges between layers and says so;
    /// resuming that run with fixed ranges is refused with a remedy.
    func testLearnedActivationRangesThroughTheRecipe() throws {
        let harness = try harness()
        XCTAssertEqual(harness.run(Self.quantizedW4A4), .success, harness.errors.text)
        let calibrated = ActivationQuantization.quantizers(in: try XCTUnwrap(harness.session.current?.model))
        XCTAssertEqual(harness.run("finetune ait epochs=3 batch=8 lr=1e-3 inundation=false ranges=learned"), .success, harness.errors.text)
        XCTAssertTrue(harness.output.text.contains("; 20 activation ranges learned"), harness.output.text)
        let learned = ActivationQuantization.quantizers(in: try XCTUnwrap(harness.session.current?.model))
        XCTAssertEqual(Set(learned.keys), Set(calibrated.keys))
        XCTAssertEqual(learned.filter { calibrated[$0.key] != $0.value }.count, 20)

        harness.errors.clear()
        XCTAssertEqual(harness.run("finetune ait resume=true epochs=1 batch=8"), .recipeFailed)
        XCTAssertTrue(harness.errors.text.contains("activation ranges trained as in the run it continues"), harness.errors.text)
        XCTAssertEqual(harness.run("finetune ait epochs=1 ranges=sometimes"), .recipeFailed)
        XCTAssertTrue(harness.errors.text.contains("learned"), harness.errors.text)
    }

    func testResumeWithoutAFinetuneSaysHowToStart() throws {
        let harness = try harness()
        XCTAssertEqual(harness.run("load resnet20\nquantize layer 2.. bits=4\nfinetune ait resume=true"), .recipeFailed)
        XCTAssertTrue(harness.errors.text.contains("there is no fine-tuning to resume"), harness.errors.text)
    }
}
