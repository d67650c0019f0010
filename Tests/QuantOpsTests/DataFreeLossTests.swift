@testable import QuantOps
import XCTest

/// The data-free additions: distillation's class-conditional cross-entropy, image priors and
/// augmentations, and fine-tuning's GDFQ loss and master placement for ternary and DoReFa grids.
final class DataFreeLossTests: XCTestCase {
    typealias SplitMix = GradientTests.SplitMix

    func testTotalVariationOfKnownImages() {
        // A constant image has no variation; a vertical step edge of height 1 in a 2x3 image has
        // 2 of its 7 neighbour pairs (4 horizontal, 3 vertical) across the edge.
        XCTAssertEqual(Distillation.totalVariation([Float](repeating: 0.3, count: 12), shape: [1, 2, 2, 3]).value, 0)
        let step: [Float] = [0, 1, 1,
                             0, 1, 1]
        XCTAssertEqual(Distillation.totalVariation(step, shape: [1, 1, 2, 3]).value, 2.0 / 7.0, accuracy: 1e-12)
        // A checkerboard differs by 2 at every pair.
        let board: [Float] = (0 ..< 16).map { (($0 / 4) + ($0 % 4)) % 2 == 0 ? 1 : -1 }
        XCTAssertEqual(Distillation.totalVariation(board, shape: [1, 1, 4, 4]).value, 4, accuracy: 1e-12)
    }

    func testTotalVariationAndL2GradientsMatchFiniteDifferences() {
        var random = SplitMix(state: 11)
        let images = random.tensor([2, 3, 5, 4]).data
        let shape = [2, 3, 5, 4]
        for (name, loss) in [("tv", { Distillation.totalVariation($0, shape: shape) }),
                             ("l2", { Distillation.meanSquare($0) })] as [(String, ([Float]) -> (value: Double, gradient: [Float]))] {
            let analytic = loss(images).gradient
            let h: Float = 1e-2
            for element in [0, 7, 19, 40, 77, 119] {
                var plus = images, minus = images
                plus[element] += h
                minus[element] -= h
                // Both losses are quadratic: the central difference is exact up to rounding.
                let numeric = (loss(plus).value - loss(minus).value) / Double(2 * h)
                XCTAssertEqual(Double(analytic[element]), numeric, accuracy: 1e-4 * max(1, abs(numeric)), "\(name) element \(element)")
            }
        }
    }

    func testImageShiftIsAPermutationAndItsPullBackIsTheAdjoint() {
        var random = SplitMix(state: 12)
        let shape = [2, 3, 4, 5]
        let x = random.tensor(shape).data, g = random.tensor(shape).data
        let shift = ImageShift(dy: 1, dx: -2, mirrored: true)
        let shifted = shift.apply(x, shape: shape)
        XCTAssertEqual(shifted.sorted(), x.sorted(), "a permutation of the pixels")
        // <T x, g> = <x, T^T g>.
        let left = zip(shifted, g).reduce(0.0) { $0 + Double($1.0 * $1.1) }
        let right = zip(x, shift.pullBack(g, shape: shape)).reduce(0.0) { $0 + Double($1.0 * $1.1) }
        XCTAssertEqual(left, right, accuracy: 1e-9 * max(1, abs(left)))
        // A shift by one pixel down moves row 0 to row 1 (circularly); mirroring reverses rows.
        let plane: [Float] = [1, 2, 3,
                              4, 5, 6]
        XCTAssertEqual(ImageShift(dy: 1, dx: 0, mirrored: false).apply(plane, shape: [1, 1, 2, 3]), [4, 5, 6, 1, 2, 3])
        XCTAssertEqual(ImageShift(dy: 0, dx: 1, mirrored: false).apply(plane, shape: [1, 1, 2, 3]), [3, 1, 2, 6, 4, 5])
        XCTAssertEqual(ImageShift(dy: 0, dx: 0, mirrored: true).apply(plane, shape: [1, 1, 2, 3]), [3, 2, 1, 6, 5, 4])
    }

    func testDistillationCrossEntropyGradientMatchesFiniteDifferences() {
        var random = SplitMix(state: 13)
        let logits = random.tensor([3, 10])
        let labels = [2, 7, 0]
        let analytic = TeacherLoss.crossEntropy(labels: labels, studentLogits: logits).gradient.data
        let h: Float = 1e-2
        for element in [0, 2, 13, 17, 29] {
            var plus = logits, minus = logits
            plus.data[element] += h
            minus.data[element] -= h
            let numeric = (TeacherLoss.crossEntropy(labels: labels, studentLogits: plus).value
                - TeacherLoss.crossEntropy(labels: labels, studentLogits: minus).value) / Double(2 * h)
            XCTAssertEqual(Double(analytic[element]), numeric, accuracy: 1e-3)
        }
    }

    func testClassConditionalDistillationMovesImagesTowardTheirTargetClasses() throws {
        let model = DistillTests.network()
        var plain = DistillationOptions(samples: 10, steps: 15, learningRate: 0.1, batchSize: 10, seed: 4)
        plain.imageShape = [3, 8, 8]
        var conditional = plain
        conditional.crossEntropyWeight = 1
        func hits(_ result: DistillationResult) throws -> Int {
            let logits = try ForwardPass.logits(model, input: result.images)
            return (0 ..< 10).filter { row in
                let scores = logits.data[row * 10 ..< row * 10 + 10]
                return scores.indices.max { scores[$0] < scores[$1] }! - row * 10 == row % 10
            }.count
        }
        func targetLogProbability(_ result: DistillationResult) throws -> Double {
            let logits = try ForwardPass.logits(model, input: result.images)
            return -TeacherLoss.crossEntropy(labels: (0 ..< 10).map { $0 % 10 }, studentLogits: logits).value
        }
        let withLabels = try Distillation.run(model: model, options: conditional)
        let without = try Distillation.run(model: model, options: plain)
        XCTAssertGreaterThan(try targetLogProbability(withLabels), try targetLogProbability(without) + 0.5)
        XCTAssertGreaterThanOrEqual(try hits(withLabels), try hits(without))
    }

    func testPriorsAndAugmentationsRunAndSmoothTheImages() throws {
        let model = DistillTests.network()
        var plain = DistillationOptions(samples: 4, steps: 20, learningRate: 0.1, batchSize: 4, seed: 5)
        plain.imageShape = [3, 8, 8]
        var smooth = plain
        smooth.totalVariationWeight = 5
        smooth.jitter = 2
        smooth.flips = true
        let rough = try Distillation.run(model: model, options: plain)
        let smoothed = try Distillation.run(model: model, options: smooth)
        XCTAssertLessThan(Distillation.totalVariation(smoothed.images.data, shape: smoothed.images.shape).value,
                          Distillation.totalVariation(rough.images.data, shape: rough.images.shape).value)
        XCTAssertEqual(try Distillation.run(model: model, options: smooth).images, smoothed.images, "augmentations are seeded")
        var bad = plain
        bad.jitter = 8
        XCTAssertThrowsError(try Distillation.run(model: model, options: bad))
        bad = plain
        bad.totalVariationWeight = -1
        XCTAssertThrowsError(try Distillation.run(model: model, options: bad))
    }

    func testGDFQLossWeighsCrossEntropyAndKL() throws {
        var random = SplitMix(state: 14)
        let float = GradientTests.smallResidualNetwork(&random)
        var student = float
        _ = try ModelTransforms.quantize(&student, layers: [2, 3], with: .uniform(bits: 3, scheme: .asymmetric, granularity: .channel))
        let trainer = try QuantizationAwareTraining(student: student, teacher: float)
        let data = try FinetuneTests.syntheticData(count: 8, seed: 3)
        func firstLoss(_ loss: FinetuneLoss, delta: Double = 0.5) throws -> Double {
            try trainer.run(on: data, options: FinetuneOptions(epochs: 1, learningRate: 0, batchSize: 8, loss: loss, inundation: false, delta: delta))
                .epochs[0].trainingLoss
        }
        let kl = try firstLoss(.kl), both = try firstLoss(.klPlusCrossEntropy)
        let ce = both - kl
        XCTAssertEqual(try firstLoss(.gdfq, delta: 0.5), 0.5 * ce + 0.5 * kl, accuracy: 1e-9)
        XCTAssertEqual(try firstLoss(.gdfq, delta: 1), kl, accuracy: 1e-9)
        XCTAssertEqual(try firstLoss(.gdfq, delta: 0.2), 0.8 * ce + 0.2 * kl, accuracy: 1e-9)
        XCTAssertThrowsError(try firstLoss(.gdfq, delta: 1.5))
    }

    func testTernaryAndDoReFaMastersArePlacedInTheirBinsInTheTeachersOrder() throws {
        var random = SplitMix(state: 15)
        let float = GradientTests.smallResidualNetwork(&random)
        var student = float
        _ = try ModelTransforms.quantize(&student, layers: [2], with: .ternary)
        _ = try ModelTransforms.quantize(&student, layers: [3], with: .dorefa(bits: 3))
        let trainer = try QuantizationAwareTraining(student: student, teacher: float)
        // The ternary layer is placed; DoReFa's tanh is nearly linear on these small weights, so
        // the teacher's weights may round to the student's values and be the masters as they are.
        XCTAssertGreaterThanOrEqual(trainer.layersPlacedFromTeacher, 1)
        XCTAssertEqual(trainer.layersPlacedFromTeacher + trainer.layersFromTeacher, 2)
        let start = trainer.initialCheckpoint().master
        for (index, parameter) in trainer.parameters.enumerated() {
            guard let grid = parameter.grid,
                  let studentWeight = student.nodes[parameter.node].operation.weightLayer?.weight,
                  let teacherWeight = float.nodes[parameter.node].operation.weightLayer?.weight else { continue }
            // The masters keep the student's values exactly...
            let projected = grid.project(start[index])
            XCTAssertLessThanOrEqual(zip(projected, studentWeight.data).map { abs($0 - $1) }.max() ?? 0, 1e-6, parameter.name)
            // ...and the teacher's order: a larger teacher weight never gets a smaller master.
            for group in stride(from: 0, to: teacherWeight.count, by: grid.groupSize) {
                let order = (group ..< group + grid.groupSize).sorted { teacherWeight.data[$0] < teacherWeight.data[$1] }
                for (a, b) in zip(order, order.dropFirst()) { XCTAssertLessThanOrEqual(start[index][a], start[index][b], parameter.name) }
            }
            // The largest teacher weight of the zero code sits near the rounding threshold.
            if parameter.layer == 2 {
                let zeros = teacherWeight.data.indices.filter { studentWeight.data[$0] == 0 }
                let edge = zeros.max { teacherWeight.data[$0] < teacherWeight.data[$1] }!
                XCTAssertEqual(start[index][edge], 0.45 * grid.scales[0], accuracy: 1e-6)
            }
        }
        // Codes that do not follow the teacher's order leave the masters on the grid.
        let grid = try XCTUnwrap(WeightGrid(precision: .ternary(alpha: 1), count: 4, outputChannels: 1))
        XCTAssertNil(QuantizationAwareTraining.placeInBins(teacher: [0.1, 0.2, 0.3, 0.4], codes: [1, 0, 0, 1], grid: grid))
        XCTAssertEqual(QuantizationAwareTraining.placeInBins(teacher: [-0.5, 0.1, 0.2, 0.9], codes: [-1, 0, 0, 1], grid: grid),
                       [-1, -0.45, 0.45, 1])
    }

    func testFinetuningAugmentationShiftsWithZerosMirrorsAndIsSeeded() throws {
        var generator = SeededGenerator(seed: 1)
        let plane: [Float] = [1, 2, 3,
                              4, 5, 6,
                              7, 8, 9]
        let image = Tensor(shape: [1, 1, 3, 3], data: plane)
        XCTAssertEqual(QuantizationAwareTraining.augment(image, jitter: 0, flips: false, using: &generator).data, plane)
        // Every augmented image is the original shifted by at most one pixel, vacated pixels zero,
        // possibly mirrored: each of its non-zero pixels keeps a neighbour relation of the original.
        var seen = Set<[Float]>()
        for _ in 0 ..< 64 {
            let out = QuantizationAwareTraining.augment(image, jitter: 1, flips: true, using: &generator).data
            seen.insert(out)
            let kept = out.filter { $0 != 0 }
            XCTAssertGreaterThanOrEqual(kept.count, 4, "a one-pixel shift keeps at least a 2x2 block")
            XCTAssertEqual(Set(kept).count, kept.count, "no pixel is duplicated")
        }
        XCTAssertGreaterThan(seen.count, 9, "shifts and mirrors vary from image to image")
        var a = SeededGenerator(seed: 7), b = SeededGenerator(seed: 7)
        let batch = Tensor(shape: [2, 1, 3, 3], data: plane + plane)
        XCTAssertEqual(QuantizationAwareTraining.augment(batch, jitter: 2, flips: true, using: &a),
                       QuantizationAwareTraining.augment(batch, jitter: 2, flips: true, using: &b))
        // A shift of (0, +1) moves the picture right and zeroes the first column.
        var shifts: [[Float]] = []
        for seed in 0 ..< 200 {
            var g = SeededGenerator(seed: UInt64(seed))
            shifts.append(QuantizationAwareTraining.augment(image, jitter: 1, flips: false, using: &g).data)
        }
        XCTAssertTrue(shifts.contains([0, 1, 2, 0, 4, 5, 0, 7, 8]))
        XCTAssertTrue(shifts.contains([5, 6, 0, 8, 9, 0, 0, 0, 0]))
    }

    func testAugmentedFinetuningTrainsAndRepeats() throws {
        var random = SplitMix(state: 16)
        let float = GradientTests.smallResidualNetwork(&random)
        var student = float
        _ = try ModelTransforms.quantize(&student, layers: [2, 3], with: .ternary)
        let trainer = try QuantizationAwareTraining(student: student, teacher: float)
        let data = try FinetuneTests.syntheticData(count: 16, seed: 4)
        let options = FinetuneOptions(epochs: 2, learningRate: 1e-2, batchSize: 8, inundation: false, jitter: 4, flips: true)
        let first = try trainer.run(on: data, options: options)
        XCTAssertEqual(try trainer.run(on: data, options: options).model, first.model)
        XCTAssertNotEqual(try trainer.run(on: data, options: FinetuneOptions(epochs: 2, learningRate: 1e-2, batchSize: 8, inundation: false)).latest.master,
                          first.latest.master, "augmentation changes what is trained on")
        XCTAssertThrowsError(try trainer.run(on: data, options: FinetuneOptions(epochs: 1, jitter: 32)))
    }

    func testBatchStatisticsTrainingReestimatesTheRunningStatisticsOfTheKeptState() throws {
        var random = SplitMix(state: 17)
        let float = GradientTests.smallResidualNetwork(&random)
        var student = float
        _ = try ModelTransforms.quantize(&student, layers: [2, 3], with: .ternary)
        let trainer = try QuantizationAwareTraining(student: student, teacher: float)
        let data = try FinetuneTests.syntheticData(count: 16, seed: 5)
        // Without a step, the kept model is the student with its statistics re-estimated on the data.
        let still = try trainer.run(on: data, options: FinetuneOptions(epochs: 1, learningRate: 0, batchSize: 8, inundation: false,
                                                                      batchStatistics: true))
        var expected = trainer.model(master: trainer.initialCheckpoint().master)
        _ = try BatchNormRecalibration.run(&expected, images: try data.batch(Array(0 ..< 16), normalization: student.normalization),
                                           batchSize: 256, shouldStop: { false })
        XCTAssertEqual(still.model, expected)
        XCTAssertNotEqual(still.model, trainer.model(master: trainer.initialCheckpoint().master), "the statistics moved")
        // Training on batch statistics lowers the KL of the re-estimated student.
        let trained = try trainer.run(on: data, options: FinetuneOptions(epochs: 3, learningRate: 1e-2, batchSize: 8, inundation: false,
                                                                        batchStatistics: true))
        XCTAssertLessThan(trained.kept.kl, trained.initialKL)
    }
}
