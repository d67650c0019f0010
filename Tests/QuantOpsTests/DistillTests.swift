@testable import QuantOps
import XCTest

/// ZeroQ-style distillation: the loss and its gradient, the optimizer loop, interruption,
/// determinism and the conversion to CIFAR-10 records.
final class DistillTests: XCTestCase {
    typealias SplitMix = GradientTests.SplitMix

    static func network() -> Model {
        var random = SplitMix(state: 7)
        return GradientTests.smallResidualNetwork(&random)
    }

    static func loss(_ model: Model, _ images: Tensor) throws -> (Double, [Int: Tensor], GradientTape) {
        let targets = try Distillation.batchNormTargets(model)
        let tape = try GradientTape(model: model, input: images, through: targets.map(\.source).max())
        let (loss, seeds) = Distillation.statisticsLoss(tape, targets: targets, wantGradient: true)
        return (loss, seeds, tape)
    }

    func testLossGradientMatchesFiniteDifferences() throws {
        let model = Self.network()
        var random = SplitMix(state: 3)
        let images = random.tensor([3, 3, 8, 8])
        let (_, seeds, tape) = try Self.loss(model, images)
        let analytic = try XCTUnwrap(try tape.backward(seeds: seeds, parameters: false).input)
        // The loss is quadratic in the statistics and sits behind ReLUs: the error of the
        // central difference was 3.2% at h=1e-2, 2.3% at 3e-3 and 0.13% at 1e-3.
        let step: Float = 1e-3
        var difference = 0.0, reference = 0.0
        for _ in 0..<24 {
            let element = random.index(below: images.count)
            var plus = images, minus = images
            plus.data[element] += step
            minus.data[element] -= step
            let numeric = (try Self.loss(model, plus).0 - Self.loss(model, minus).0) / (2 * Double(step))
            difference += (numeric - Double(analytic.data[element])) * (numeric - Double(analytic.data[element]))
            reference += numeric * numeric
        }
        XCTAssertGreaterThan(reference, 0)
        XCTAssertLessThan(difference.squareRoot() / reference.squareRoot(), 1e-2)
    }

    func testLossIsZeroWhenRunningStatisticsAreTheBatchStatistics() throws {
        var random = SplitMix(state: 5)
        let conv = Conv2D(weight: random.tensor([4, 3, 3, 3]), padding: (1, 1))
        let images = random.tensor([4, 3, 6, 6])
        let convOutput = try Kernels.conv2d(images, conv)
        let statistics = try GradientTape.measure(convOutput, channels: 4, node: "conv")
        let norm = BatchNorm(gamma: Tensor(repeating: 1, shape: [4]), beta: Tensor(zeros: [4]),
                             runningMean: Tensor(shape: [4], data: statistics.mean),
                             runningVar: Tensor(shape: [4], data: statistics.variance))
        let model = GradientTests.model([("input", .input, []), ("conv", .conv(conv), [0]), ("bn", .batchNorm(norm), [1])])
        XCTAssertEqual(try Self.loss(model, images).0, 0, accuracy: 1e-9)
        // Shifting every running mean by 0.5 costs exactly 0.5^2 (mean over channels).
        var shifted = norm
        shifted.runningMean.data = statistics.mean.map { $0 + 0.5 }
        let shiftedModel = GradientTests.model([("input", .input, []), ("conv", .conv(conv), [0]), ("bn", .batchNorm(shifted), [1])])
        XCTAssertEqual(try Self.loss(shiftedModel, images).0, 0.25, accuracy: 1e-5)
    }

    func testDistillationLowersTheLossAndRepeatsWithTheSameSeed() throws {
        let model = Self.network()
        let options = DistillationOptions(samples: 6, steps: 20, learningRate: 0.1, batchSize: 3, seed: 42)
        var reported: [Int] = []
        let first = try Distillation.runOnImages(model, options, progress: { reported.append($0.step) })
        XCTAssertEqual(reported, Array(1...20), "one report per step")
        XCTAssertLessThan(first.finalLoss, first.initialLoss * 0.5)
        XCTAssertEqual(first.stepsCompleted, 20)
        XCTAssertFalse(first.interrupted)
        let again = try Distillation.runOnImages(model, options)
        XCTAssertEqual(again.images, first.images)
        var otherSeed = options
        otherSeed.seed = 43
        XCTAssertNotEqual(try Distillation.runOnImages(model, otherSeed).images, first.images)
    }

    func testInterruptionKeepsTheBestImagesSoFar() throws {
        let model = Self.network()
        let options = DistillationOptions(samples: 4, steps: 50, learningRate: 0.1, batchSize: 4, seed: 1)
        var polls = 0
        let result = try Distillation.runOnImages(model, options, shouldStop: {
            polls += 1
            return polls >= 3
        })
        XCTAssertTrue(result.interrupted)
        XCTAssertEqual(result.stepsCompleted, 3)
        XCTAssertEqual(result.images.shape, [4, 3, 8, 8])
        // The kept images are the best evaluated ones, so their loss is what the result reports.
        XCTAssertEqual(try Self.loss(model, result.images).0, result.finalLoss, accuracy: 1e-9)
        XCTAssertLessThanOrEqual(result.finalLoss, result.initialLoss)
    }

    func testClampKeepsPixelsInsideTheByteRange() throws {
        let model = Self.network()
        let normalization = Normalization(mean: [0.4914, 0.4822, 0.4465], std: [0.247, 0.243, 0.261])
        var clamped = model
        clamped.normalization = normalization
        let result = try Distillation.runOnImages(clamped, DistillationOptions(samples: 2, steps: 5, learningRate: 0.5, batchSize: 2))
        let (lower, upper) = Distillation.pixelBounds(normalization)
        let plane = 64
        for (i, value) in result.images.data.enumerated() {
            let channel = (i / plane) % 3
            XCTAssertGreaterThanOrEqual(value, lower[channel] - 1e-6)
            XCTAssertLessThanOrEqual(value, upper[channel] + 1e-6)
        }
    }

    func testGaussianStartHasUnitVarianceAndDependsOnlyOnTheSeed() {
        let values = Distillation.gaussianImages(count: 4, seed: 9)
        let mean = values.reduce(0, +) / Float(values.count)
        let variance = values.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Float(values.count)
        XCTAssertEqual(mean, 0, accuracy: 0.05)
        XCTAssertEqual(variance, 1, accuracy: 0.05)
        XCTAssertEqual(Array(Distillation.gaussianImages(count: 8, seed: 9).prefix(values.count)), values,
                       "asking for more images extends the same sequence")
    }

    func testDatasetRecordsRoundTripAndCarryThePredictedLabels() throws {
        let model = try EngineFixtures.zooModel("resnet20")
        var random = SplitMix(state: 11)
        let images = random.tensor([5, 3, 32, 32], scale: 1.5)
        // CIFAR-sized images of a ten-class model are CIFAR-10 records, so 'save data' can write them.
        let dataset = try XCTUnwrap(try Distillation.dataset(named: "distilled", images: images, model: model) as? CIFAR10)
        XCTAssertEqual(dataset.count, 5)
        // Stored pixels are the de-normalized values rounded to bytes (clipped to 0...255).
        let (mean, std) = Distillation.channelNormalization(model.normalization)
        for i in stride(from: 0, to: images.count, by: 97) {
            let channel = (i / 1024) % 3
            let expected = min(max(((images.data[i] * std[channel] + mean[channel]) * 255).rounded(), 0), 255)
            XCTAssertEqual(Float(dataset.pixels[i]), expected)
        }
        let logits = try ForwardPass.logits(model, input: dataset.batch(0..<5, normalization: model.normalization))
        for row in 0..<5 {
            let scores = Array(logits.data[row * 10 ..< (row + 1) * 10])
            XCTAssertEqual(Int(dataset.labels[row]), scores.indices.max { scores[$0] < scores[$1] })
        }
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("distill-\(UUID().uuidString).bin")
        defer { try? FileManager.default.removeItem(at: file) }
        try dataset.write(to: file)
        XCTAssertEqual(try Data(contentsOf: file).count, 5 * CIFAR10.recordSize)
        let read = try CIFAR10(name: "distilled", files: [file])
        XCTAssertEqual(read.labels, dataset.labels)
        XCTAssertEqual(read.pixels, dataset.pixels)
    }

    func testImagesOfOtherSizesKeepTheirSizeAndTheModelsClasses() throws {
        var model = try EngineFixtures.zooModel("resnet20")
        model.inputShape = [3, 40, 24]
        var random = SplitMix(state: 12)
        let images = random.tensor([3, 3, 40, 24])
        let dataset = try Distillation.dataset(named: "tall", images: images, model: model)
        XCTAssertTrue(dataset is ByteImages)
        XCTAssertEqual(dataset.imageShape, ImageShape(channels: 3, height: 40, width: 24))
        XCTAssertEqual(dataset.classCount, 10)
        let batch = try dataset.batch([0, 2], normalization: model.normalization)
        XCTAssertEqual(batch.shape, [2, 3, 40, 24])
        // Bytes round the normalized values to within half a pixel step.
        let (mean, std) = Distillation.channelNormalization(model.normalization)
        let step = 0.5 / 255 / std.min()!
        for i in stride(from: 0, to: 3 * 40 * 24, by: 53) {
            let channel = i / (40 * 24)
            let clipped = min(max(images.data[i], -mean[channel] / std[channel]), (1 - mean[channel]) / std[channel])
            XCTAssertEqual(batch.data[i], clipped, accuracy: step * 1.01)
        }
    }

    func testResNet20DistillationLowersItsStatisticsLoss() throws {
        let model = try EngineFixtures.zooModel("resnet20")
        let result = try Distillation.run(model: model, options: DistillationOptions(samples: 4, steps: 3, batchSize: 4, seed: 0))
        XCTAssertEqual(result.images.shape, [4, 3, 32, 32])
        XCTAssertLessThan(result.finalLoss, result.initialLoss)
        // 19 batch norms: the Gaussian start is far from every layer's statistics.
        XCTAssertEqual(try Distillation.batchNormTargets(model).count, 19)
    }

    func testRefusesModelsWithoutBatchNorm() {
        var random = SplitMix(state: 2)
        let model = GradientTests.model([("input", .input, []), ("conv", .conv(Conv2D(weight: random.tensor([2, 3, 1, 1]))), [0])])
        XCTAssertThrowsError(try Distillation.run(model: model, options: DistillationOptions(samples: 2, steps: 1))) { error in
            XCTAssertEqual((error as? DistillationError)?.unmet, .unfoldedBatchNorms, String(describing: error))
        }
    }
}

extension Distillation {
    /// The loop on the small test network's 8x8 images.
    static func runOnImages(_ model: Model, _ options: DistillationOptions, shouldStop: () -> Bool = { false },
                            progress: (DistillationProgress) -> Void = { _ in }) throws -> DistillationResult {
        var options = options
        options.imageShape = [3, 8, 8]
        return try run(model: model, options: options, shouldStop: shouldStop, progress: progress)
    }
}
