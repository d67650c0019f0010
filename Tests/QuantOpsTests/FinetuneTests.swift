@testable import QuantOps
import XCTest

/// Quantization-aware fine-tuning (AIT): the straight-through estimator on a fixed grid, the
/// kappa search of gradient inundation, the teacher losses, Nesterov SGD, and the training loop.
final class FinetuneTests: XCTestCase {
    typealias SplitMix = TestRandom

    // MARK: - Straight-through estimator

    func testStraightThroughPassesRoundedWeightsAndStopsClippedOnes() throws {
        // 2-bit symmetric: levels -1...1, scale 0.5, so the grid covers [-0.75, 0.75] before clipping.
        let precision = WeightPrecision.uniform(bits: 2, scheme: .symmetric,
                                                grid: QuantizationGrid(scales: [0.5], zeroPoints: [0], levels: -1...1, granularity: .tensor))
        let grid = try XCTUnwrap(WeightGrid(precision: precision, count: 6, outputChannels: 1))
        let master: [Float] = [-2, -0.7, -0.2, 0.3, 0.74, 0.9]
        XCTAssertEqual(grid.project(master), [-0.5, -0.5, 0, 0.5, 0.5, 0.5])
        XCTAssertEqual(grid.codes(master), [-1, -1, 0, 1, 1, 1])
        let gradient: [Float] = [1, 2, 3, 4, 5, 6]
        // -2 rounds to code -4 and 0.9 to code 2 (outside -1...1): clipped, no gradient.
        XCTAssertEqual(grid.straightThrough(master: master, gradient: gradient), [0, 2, 3, 4, 5, 0])
    }

    func testStraightThroughGradientOfAQuantizedLayerIsTheGradientAtItsQuantizedWeights() throws {
        var random = SplitMix(state: 11)
        let float = GradientTests.smallResidualNetwork(&random)
        var student = float
        let layer = student.weightLayerNodes[1]
        guard case .conv(var conv) = student.nodes[layer].operation else { return XCTFail("layer 2 is not a conv") }
        let (quantized, precision) = try WeightQuantizer.uniform(bits: 3, scheme: .asymmetric, granularity: .channel).quantize(conv.weight)
        conv.weight = quantized
        conv.precision = precision
        student.nodes[layer].operation = .conv(conv)

        let trainer = try QuantizationAwareTraining(student: student, teacher: float)
        let slot = try XCTUnwrap(trainer.parameters.firstIndex { $0.node == layer && $0.role == .weight })
        let grid = try XCTUnwrap(trainer.parameters[slot].grid)
        // The master starts from the teacher's float weights, which round to the student's values.
        XCTAssertEqual(trainer.layersFromTeacher, 1)
        XCTAssertEqual(grid.project(trainer.initialCheckpoint().master[slot]), quantized.data)

        // d loss / d master, by STE, is d loss / d (quantized weight): the tape's gradient of the
        // model built from the masters, which holds the quantized values.
        let input = random.tensor([2, 3, 8, 8])
        let built = trainer.model(master: trainer.initialCheckpoint().master)
        XCTAssertEqual(built, student)
        let tape = try GradientTape(model: built, input: input)
        let seed = random.tensor(tape.output.shape)
        let gradient = try XCTUnwrap(try tape.backward(seeds: [built.nodes.count - 1: seed], input: false).parameters[layer]).weight
        // Finite differences on the quantized weight itself agree with that gradient.
        func objective(_ weights: [Float]) throws -> Double {
            var model = built
            var changed = conv
            changed.weight.data = weights
            model.nodes[layer].operation = .conv(changed)
            let output = try ForwardPass.logits(model, input: input)
            return zip(output.data, seed.data).reduce(0) { $0 + Double($1.0 * $1.1) }
        }
        for element in [0, 17, 40, 71] {
            var plus = quantized.data, minus = quantized.data
            plus[element] += 1e-3
            minus[element] -= 1e-3
            let numeric = (try objective(plus) - objective(minus)) / 2e-3
            XCTAssertEqual(numeric, Double(gradient.data[element]), accuracy: 2e-3 * max(1, abs(numeric)))
        }
        // The masters lie inside the grid, so the STE passes every element unchanged.
        XCTAssertEqual(grid.straightThrough(master: trainer.initialCheckpoint().master[slot], gradient: gradient.data), gradient.data)
    }

    // MARK: - Gradient inundation

    func testKappaSearchHitsTheTargetFractionOnASyntheticLayer() throws {
        var random = SplitMix(state: 21)
        let count = 40_000
        let weights = random.tensor([64, count / 64], scale: 0.1)
        let (_, precision) = try WeightQuantizer.uniform(bits: 4, scheme: .asymmetric, granularity: .channel).quantize(weights)
        let grid = try XCTUnwrap(WeightGrid(precision: precision, count: count, outputChannels: 64))
        let gradient = random.tensor([count], scale: 1e-3).data
        for rho in [1e-3, 1e-2] {
            let search = GradientInundation.search(master: weights.data, gradient: gradient, grid: grid, learningRate: 1e-4,
                                                   rho: rho, cap: GradientInundation.ceiling)
            let target = rho * Double(count)
            XCTAssertGreaterThan(search.kappa, 1, "a tiny gradient needs a large kappa")
            // Five bisections leave kappa within 1/32 of its bracket; the count lands within a few
            // percent of the target.
            XCTAssertEqual(Double(search.predictedChanges), target, accuracy: 0.05 * target, "rho \(rho)")
            XCTAssertLessThanOrEqual(search.evaluations, 2 + 30 + GradientInundation.bisectionSteps)
            // The prediction is what the plain step really does.
            let stepped = zip(weights.data, gradient).map { $0 - 1e-4 * search.kappa * $1 }
            XCTAssertEqual(WeightGrid.changedCodes(grid.codes(weights.data), grid.codes(stepped)), search.predictedChanges)
        }
    }

    func testKappaSearchKeepsOneWhenTheGradientIsLargeAndStopsAtTheWarmUpCap() throws {
        var random = SplitMix(state: 23)
        let weights = random.tensor([1000], scale: 0.1)
        let (_, precision) = try WeightQuantizer.uniform(bits: 4, scheme: .symmetric, granularity: .tensor).quantize(weights)
        let grid = try XCTUnwrap(WeightGrid(precision: precision, count: 1000, outputChannels: 1))
        let large = random.tensor([1000], scale: 100).data
        XCTAssertEqual(GradientInundation.search(master: weights.data, gradient: large, grid: grid, learningRate: 1e-4,
                                                 rho: 1e-3, cap: 128).kappa, 1)
        let tiny = random.tensor([1000], scale: 1e-9).data
        let capped = GradientInundation.search(master: weights.data, gradient: tiny, grid: grid, learningRate: 1e-4, rho: 1e-3, cap: 128)
        XCTAssertEqual(capped.kappa, 128)
        XCTAssertEqual(capped.predictedChanges, 0)
    }

    // MARK: - Losses and optimizer

    func testKLDivergenceOfADistributionWithItselfIsZero() {
        var random = SplitMix(state: 31)
        let logits = random.tensor([5, 10], scale: 8)
        let result = TeacherLoss.klDivergence(teacherLogProbabilities: TeacherLoss.logSoftmax(logits), studentLogits: logits)
        XCTAssertEqual(result.value, 0, accuracy: 1e-12)
        XCTAssertEqual(result.gradient.data.map(abs).max() ?? 1, 0, accuracy: 1e-7)
    }

    func testLossGradientsMatchFiniteDifferences() {
        var random = SplitMix(state: 33)
        let teacher = TeacherLoss.logSoftmax(random.tensor([3, 10], scale: 3))
        let student = random.tensor([3, 10], scale: 3)
        let labels = [2, 7, 0]
        let kl = TeacherLoss.klDivergence(teacherLogProbabilities: teacher, studentLogits: student)
        let ce = TeacherLoss.crossEntropy(labels: labels, studentLogits: student)
        XCTAssertGreaterThan(kl.value, 0)
        for element in [0, 5, 12, 29] {
            var plus = student, minus = student
            plus.data[element] += 1e-2
            minus.data[element] -= 1e-2
            let klNumeric = (TeacherLoss.klDivergence(teacherLogProbabilities: teacher, studentLogits: plus).value
                - TeacherLoss.klDivergence(teacherLogProbabilities: teacher, studentLogits: minus).value) / 2e-2
            let ceNumeric = (TeacherLoss.crossEntropy(labels: labels, studentLogits: plus).value
                - TeacherLoss.crossEntropy(labels: labels, studentLogits: minus).value) / 2e-2
            XCTAssertEqual(Double(kl.gradient.data[element]), klNumeric, accuracy: 1e-4)
            XCTAssertEqual(Double(ce.gradient.data[element]), ceNumeric, accuracy: 1e-4)
        }
    }

    func testNesterovStepFollowsPyTorch() {
        // torch.optim.SGD([w], lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01), two steps
        // with gradient 1 on w = 2: d = 1.02, v = 1.02, w = 2 - 0.1 * (1.02 + 0.918) = 1.8062;
        // then d = 1.018062, v = 0.918 + 1.018062 = 1.936062, w -= 0.1 * (1.018062 + 1.7424558).
        let sgd = NesterovSGD(learningRate: 0.1, momentum: 0.9, weightDecay: 0.01)
        var weights: [Float] = [2], velocity: [Float] = [0]
        sgd.step(&weights, velocity: &velocity, gradient: [1])
        XCTAssertEqual(weights[0], 1.8062, accuracy: 1e-6)
        sgd.step(&weights, velocity: &velocity, gradient: [1])
        XCTAssertEqual(velocity[0], 1.936062, accuracy: 1e-5)
        XCTAssertEqual(weights[0], 1.8062 - 0.1 * (1.018062 + 0.9 * 1.936062), accuracy: 1e-5)
    }

    func testTheMomentumAwareSearchPredictsTheChangesTheOptimizerMakes() throws {
        var random = SplitMix(state: 37)
        let count = 20_000
        let weights = random.tensor([32, count / 32], scale: 0.1)
        let (_, precision) = try WeightQuantizer.uniform(bits: 4, scheme: .asymmetric, granularity: .channel).quantize(weights)
        let grid = try XCTUnwrap(WeightGrid(precision: precision, count: count, outputChannels: 32))
        let gradient = random.tensor([count], scale: 1e-3).data
        let sgd = NesterovSGD(learningRate: 1e-4, momentum: 0.9, weightDecay: 1e-4)
        var velocity = random.tensor([count], scale: 1e-3).data
        let step = sgd.affineStep(weights: weights.data, velocity: velocity, gradient: gradient)
        let search = GradientInundation.search(master: weights.data, start: step.start, direction: step.direction,
                                               grid: grid, rho: 1e-3, cap: GradientInundation.ceiling)
        XCTAssertEqual(Double(search.predictedChanges), 20, accuracy: 2)
        var stepped = weights.data
        sgd.step(&stepped, velocity: &velocity, gradient: gradient.map { $0 * search.kappa })
        for index in stride(from: 0, to: count, by: 997) {
            XCTAssertEqual(stepped[index], step.start[index] - search.kappa * step.direction[index], accuracy: 1e-6)
        }
        XCTAssertEqual(WeightGrid.changedCodes(grid.codes(weights.data), grid.codes(stepped)), search.predictedChanges)
    }

    // MARK: - Training

    static func syntheticData(count: Int, seed: UInt64) throws -> CIFAR10 {
        var generator = SeededGenerator(seed: seed)
        let pixels = (0 ..< count * CIFAR10.imageSize).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
        let labels = (0 ..< count).map { _ in UInt8(generator.next() % 10) }
        return try CIFAR10(name: "synthetic", labels: labels, pixels: pixels)
    }

    func testAFloatStudentWithLearningRateZeroDoesNotChange() throws {
        var random = SplitMix(state: 41)
        let model = GradientTests.smallResidualNetwork(&random)
        let trainer = try QuantizationAwareTraining(student: model, teacher: model)
        let outcome = try trainer.run(on: try Self.syntheticData(count: 12, seed: 1),
                                      options: FinetuneOptions(epochs: 2, learningRate: 0, batchSize: 5))
        XCTAssertEqual(outcome.model, model)
        XCTAssertEqual(outcome.initialKL, 0, accuracy: 1e-9)
        XCTAssertEqual(outcome.epochs.count, 2)
        XCTAssertEqual(outcome.epochs.map(\.steps), [3, 3])
    }

    func testFinetuningLowersTheKLOfAQuantizedStudentAndKeepsItsGrid() throws {
        var random = SplitMix(state: 43)
        let float = GradientTests.smallResidualNetwork(&random)
        var student = float
        _ = try ModelTransforms.quantize(&student, layers: [1, 2, 3, 4], with: .uniform(bits: 3, scheme: .asymmetric, granularity: .channel))
        let trainer = try QuantizationAwareTraining(student: student, teacher: float)
        let data = try Self.syntheticData(count: 32, seed: 2)
        var reported: [Int] = []
        let options = FinetuneOptions(epochs: 3, learningRate: 1e-3, batchSize: 8, rho: 1e-2)
        let outcome = try trainer.run(on: data, options: options, epochEnded: { report, _ in reported.append(report.epoch) })
        XCTAssertEqual(reported, [1, 2, 3])
        XCTAssertLessThan(outcome.kept.kl, outcome.initialKL)
        XCTAssertTrue(outcome.epochs.allSatisfy { $0.changedPerStep > 0 })
        // Every quantized layer ends on the grid it started with.
        for (index, parameter) in trainer.parameters.enumerated() {
            guard let grid = parameter.grid, case .some(let weight) = outcome.model.nodes[parameter.node].operation.weightLayer?.weight else { continue }
            XCTAssertEqual(grid.project(outcome.kept.master[index]), weight.data)
            XCTAssertEqual(grid.project(weight.data), weight.data)
        }
        // The same seed gives the same model; resuming continues the epoch count.
        let again = try trainer.run(on: data, options: options)
        XCTAssertEqual(again.model, outcome.model)
        let resumed = try trainer.run(on: data, options: FinetuneOptions(epochs: 1, learningRate: 1e-3, batchSize: 8, rho: 1e-2),
                                      from: outcome.latest)
        XCTAssertEqual(resumed.epochs.map(\.epoch), [4])

        // With held-out images the kept state is the one with the lowest KL there.
        let heldOut = try Self.syntheticData(count: 16, seed: 9)
        let validated = try trainer.run(on: data, validation: heldOut, options: options)
        let validationKLs = [try XCTUnwrap(validated.initialValidation?.kl)] + validated.epochs.compactMap { $0.validation?.kl }
        XCTAssertEqual(validationKLs.count, 4)
        XCTAssertEqual(validated.kept.validationKL, validationKLs.min())

        // A better state from an earlier run on the same held-out images stays kept.
        var earlier = validated.kept
        earlier.validationKL = -1
        let continued = try trainer.run(on: data, validation: heldOut, options: options, from: validated.latest, bestSoFar: earlier)
        XCTAssertEqual(continued.kept, earlier)
        XCTAssertEqual(continued.model, trainer.model(master: earlier.master))
    }

    /// With learned ranges every activation quantizer between layers trains its step size (the
    /// one on the input image and the zero points stay); without, the ranges stay as they were.
    func testLearnedActivationRangesMoveTheStepSizesOnly() throws {
        var random = SplitMix(state: 53)
        let float = GradientTests.smallResidualNetwork(&random)
        var student = float
        _ = try ModelTransforms.quantize(&student, layers: [1, 2, 3, 4], with: .uniform(bits: 4, scheme: .asymmetric, granularity: .channel))
        try ActivationQuantization.quantize(&student, with: ActivationQuantizer(bits: 4, scheme: .asymmetric))
        for index in student.nodes.indices {
            guard case .fakeQuantize(var quantizer) = student.nodes[index].operation else { continue }
            quantizer.range = -1 ... 2
            student.nodes[index].operation = .fakeQuantize(quantizer)
        }
        let quantizers = { (model: Model) in model.nodes.indices.compactMap { index -> (Int, ActivationQuantizer)? in
            guard case .fakeQuantize(let quantizer) = model.nodes[index].operation else { return nil }
            return (index, quantizer)
        } }
        let data = try Self.syntheticData(count: 24, seed: 3)
        let options = FinetuneOptions(epochs: 2, learningRate: 1e-2, batchSize: 8, inundation: false)

        let fixed = try QuantizationAwareTraining(student: student, teacher: float).run(on: data, options: options)
        XCTAssertEqual(quantizers(fixed.model).map(\.1), quantizers(student).map(\.1))

        let trainer = try QuantizationAwareTraining(student: student, teacher: float, learnsActivationRanges: true)
        let inputQuantizers = quantizers(student).filter { student.nodes[student.nodes[$0.0].inputs[0]].operation == .input }
        XCTAssertEqual(inputQuantizers.count, 1)
        XCTAssertEqual(trainer.parameters.filter { $0.role == .activationStepSize }.count, quantizers(student).count - 1)
        let learned = try trainer.run(on: data, options: options)
        XCTAssertLessThan(learned.kept.kl, learned.initialKL)
        for ((index, before), (_, after)) in zip(quantizers(student), quantizers(learned.model)) {
            let (start, end) = (try XCTUnwrap(before.grid()), try XCTUnwrap(after.grid()))
            XCTAssertEqual(end.zeroPoints, start.zeroPoints)
            if inputQuantizers.contains(where: { $0.0 == index }) {
                XCTAssertEqual(end.scales, start.scales)
            } else {
                XCTAssertNotEqual(end.scales, start.scales, "node \(student.nodes[index].name)")
            }
        }
        // A state saved with learned ranges does not resume a run without them.
        XCTAssertThrowsError(try QuantizationAwareTraining(student: student, teacher: float).run(on: data, options: options, from: learned.latest))
    }

    func testStoppingBetweenStepsKeepsTheBestCompletedState() throws {
        var random = SplitMix(state: 47)
        let float = GradientTests.smallResidualNetwork(&random)
        var student = float
        _ = try ModelTransforms.quantize(&student, layers: [1, 2, 3, 4], with: .uniform(bits: 3, scheme: .asymmetric, granularity: .channel))
        let trainer = try QuantizationAwareTraining(student: student, teacher: float)
        var steps = 0
        let outcome = try trainer.run(on: try Self.syntheticData(count: 16, seed: 3),
                                      options: FinetuneOptions(epochs: 5, learningRate: 1e-3, batchSize: 8),
                                      shouldStop: { steps >= 5 }, stepEnded: { _, _, _ in steps += 1 })
        XCTAssertTrue(outcome.interrupted)
        XCTAssertEqual(outcome.epochs.count, 2, "two epochs of two steps completed before the stop")
        XCTAssertEqual(outcome.model, trainer.model(master: outcome.kept.master))
        XCTAssertLessThanOrEqual(outcome.kept.kl, outcome.initialKL)
    }
}
