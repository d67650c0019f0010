import XCTest
@testable import QuantOps

final class TransformTests: XCTestCase {
    private func assertWellFormed(_ model: Model, file: StaticString = #filePath, line: UInt = #line) {
        for (index, node) in model.nodes.enumerated() {
            XCTAssertTrue(node.inputs.allSatisfy { $0 >= 0 && $0 < index }, "\(node.name) reads \(node.inputs)",
                          file: file, line: line)
        }
    }

    func testFoldBatchNormFollowsTheFormulaAndKeepsLogits() throws {
        let model = QuantizerFixtures.convBNReLUConv(seed: 1)
        var folded = model
        XCTAssertEqual(try ModelTransforms.foldBatchNorm(&folded), 2)
        XCTAssertEqual(folded.nodes.map(\.name), ["input", "conv1", "relu1", "conv2", "relu2", "pool", "flatten", "linear"])
        assertWellFormed(folded)

        guard case .conv(let original) = model.nodes[1].operation, case .batchNorm(let norm) = model.nodes[2].operation,
              case .conv(let conv) = folded.nodes[1].operation, let bias = conv.bias
        else { return XCTFail("unexpected graph") }
        for j in 0..<8 {
            let s = norm.gamma.data[j] / (norm.runningVar.data[j] + norm.epsilon).squareRoot()
            XCTAssertEqual(bias.data[j], norm.beta.data[j] - s * norm.runningMean.data[j], accuracy: 1e-6)
            for k in j * 27 ..< (j + 1) * 27 { XCTAssertEqual(conv.weight.data[k], s * original.weight.data[k], accuracy: 1e-6) }
        }

        let images = QuantizerFixtures.images(4, seed: 8)
        let before = try ForwardPass.logits(model, input: images)
        let after = try ForwardPass.logits(folded, input: images)
        XCTAssertLessThan(QuantizerFixtures.maxRelativeDifference(after, before), 1e-5)
        XCTAssertEqual(try ModelTransforms.foldBatchNorm(&folded), 0, "nothing left to fold")
    }

    func testFoldKeepsAnExistingConvBias() throws {
        var model = QuantizerFixtures.convBNReLUConv(seed: 2)
        guard case .conv(var conv) = model.nodes[4].operation else { return XCTFail("unexpected graph") }
        conv.bias = Tensor(shape: [6], data: [0.1, -0.2, 0.3, 0, 0.05, -0.4])
        model.nodes[4].operation = .conv(conv)
        var folded = model
        try ModelTransforms.foldBatchNorm(&folded)
        let images = QuantizerFixtures.images(3, seed: 4)
        XCTAssertLessThan(QuantizerFixtures.maxRelativeDifference(try ForwardPass.logits(folded, input: images),
                                                                  try ForwardPass.logits(model, input: images)), 1e-5)
    }

    func testFoldLeavesBatchNormsThatNoLayerOwnsAndRefusesQuantizedLayers() throws {
        var random = SeededGenerator(seed: 6)
        let conv = Conv2D(weight: random.tensor([3, 3, 1, 1]))
        // The conv's output feeds both the BN and the add, so folding would change the add.
        let nodes = [
            Node(name: "input", operation: .input, inputs: []),
            Node(name: "conv", operation: .conv(conv), inputs: [0]),
            Node(name: "bn", operation: .batchNorm(QuantizerFixtures.batchNorm(3, &random)), inputs: [1]),
            Node(name: "add", operation: .add, inputs: [2, 1]),
            Node(name: "bn_after_add", operation: .batchNorm(QuantizerFixtures.batchNorm(3, &random)), inputs: [3]),
        ]
        var model = Model(name: "shared", nodes: nodes, normalization: Normalization(mean: [0], std: [1]))
        XCTAssertEqual(try ModelTransforms.foldBatchNorm(&model), 0)
        XCTAssertEqual(model.nodes.count, 5)

        var quantized = QuantizerFixtures.convBNReLUConv(seed: 1)
        try ModelTransforms.quantize(&quantized, layers: [2], with: .ternary)
        let before = quantized
        XCTAssertThrowsError(try ModelTransforms.foldBatchNorm(&quantized)) { error in
            XCTAssertTrue("\(error)".contains("fold bn before quantizing"), "\(error)")
        }
        XCTAssertEqual(quantized, before, "conv1 was foldable, but a refused fold changes nothing")
    }

    func testFoldKeepsPretrainedLogits() throws {
        for (name, norms) in [("resnet20", 19), ("nm-resnet56", 57)] {
            let model = try QuantizerFixtures.zooModel(name)
            let images = try QuantizerFixtures.testImages(20, normalization: model.normalization)
            var folded = model
            XCTAssertEqual(try ModelTransforms.foldBatchNorm(&folded), norms, name)
            assertWellFormed(folded)
            let difference = QuantizerFixtures.maxRelativeDifference(try ForwardPass.logits(folded, input: images),
                                                                     try ForwardPass.logits(model, input: images))
            XCTAssertLessThan(difference, 1e-4, name)
        }
    }

    func testQuantizeTouchesOnlyTheSelectedLayers() throws {
        var model = QuantizerFixtures.convBNReLUConv(seed: 1)
        let original = model
        let results = try ModelTransforms.quantize(&model, layers: [1, 3], with: .dorefa(bits: 4))
        XCTAssertEqual(results.map(\.name), ["conv1", "linear"])
        XCTAssertTrue(results.allSatisfy { $0.relativeError > 0 && $0.relativeError < 0.2 })
        XCTAssertEqual(model.nodes[4], original.nodes[4], "conv2 untouched")
        guard case .linear(let linear) = model.nodes[9].operation else { return XCTFail("unexpected graph") }
        XCTAssertEqual(linear.precision.label, "4-bit dorefa")
        XCTAssertThrowsError(try ModelTransforms.quantize(&model, layers: [4], with: .ternary)) { error in
            XCTAssertTrue("\(error)".contains("3 layers"), "\(error)")
        }
    }

    // MARK: - BN re-estimation

    func testRecalibratedStatisticsAreThePopulationStatisticsOfTheNewModel() throws {
        var model = QuantizerFixtures.convBNReLUConv(seed: 12)
        try ModelTransforms.quantize(&model, layers: [1], with: .ternary)
        let images = QuantizerFixtures.images(40, seed: 3)
        var recalibrated = model
        let report = try BatchNormRecalibration.run(&recalibrated, images: images, batchSize: 7)
        XCTAssertEqual(report.layers.map(\.name), ["bn1", "bn2"])
        XCTAssertEqual(report.samples, 40)

        // Running the new model, each BN's input has exactly the statistics it now stores.
        var inputs: [Int: Tensor] = [:]
        _ = try ForwardPass.reference(recalibrated, input: images) { index, output in inputs[index] = output }
        for (normIndex, sourceIndex) in [(2, 1), (5, 4)] {
            guard case .batchNorm(let norm) = recalibrated.nodes[normIndex].operation, let x = inputs[sourceIndex] else {
                return XCTFail("unexpected graph")
            }
            let spatial = x.count / (x.shape[0] * x.shape[1])
            for c in 0..<norm.channels {
                var values: [Double] = []
                for n in 0..<x.shape[0] {
                    let base = (n * x.shape[1] + c) * spatial
                    values += x.data[base ..< base + spatial].map(Double.init)
                }
                let mean = values.reduce(0, +) / Double(values.count)
                let variance = values.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(values.count - 1)
                XCTAssertEqual(Double(norm.runningMean.data[c]), mean, accuracy: 1e-5 * max(1, abs(mean)))
                XCTAssertEqual(Double(norm.runningVar.data[c]), variance, accuracy: 1e-5 * max(1, variance))
            }
        }
    }

    func testRecalibrationDoesNotDependOnBatchSize() throws {
        let model = QuantizerFixtures.convBNReLUConv(seed: 13)
        let images = QuantizerFixtures.images(70, seed: 5)
        var small = model
        var large = model
        try BatchNormRecalibration.run(&small, images: images, batchSize: 7)
        try BatchNormRecalibration.run(&large, images: images, batchSize: 64)
        for index in [2, 5] {
            guard case .batchNorm(let a) = small.nodes[index].operation, case .batchNorm(let b) = large.nodes[index].operation
            else { return XCTFail("unexpected graph") }
            for c in 0..<a.channels {
                XCTAssertEqual(a.runningMean.data[c], b.runningMean.data[c], accuracy: 1e-5)
                XCTAssertEqual(a.runningVar.data[c], b.runningVar.data[c], accuracy: 1e-5 * max(1, b.runningVar.data[c]))
            }
        }
    }

    func testRecalibrationRefusesModelsWithoutBatchNormAndStopsCleanly() throws {
        var folded = QuantizerFixtures.convBNReLUConv(seed: 1)
        try ModelTransforms.foldBatchNorm(&folded)
        XCTAssertThrowsError(try BatchNormRecalibration.run(&folded, images: QuantizerFixtures.images(4, seed: 1), batchSize: 2)) {
            XCTAssertTrue("\($0)".contains("no batch-norm nodes"), "\($0)")
        }
        var model = QuantizerFixtures.convBNReLUConv(seed: 1)
        let original = model
        XCTAssertThrowsError(try BatchNormRecalibration.run(&model, images: QuantizerFixtures.images(4, seed: 1),
                                                            batchSize: 2, shouldStop: { true }))
        XCTAssertEqual(model, original, "an interrupted run leaves the statistics alone")
    }

    func testRecalibrationOnItsOwnDataMovesFloatStatisticsModerately() throws {
        var model = try QuantizerFixtures.zooModel("resnet20")
        let images = try QuantizerFixtures.testImages(100, normalization: model.normalization, file: "data_batch_1.bin")
        let report = try BatchNormRecalibration.run(&model, images: images, batchSize: 50)
        XCTAssertEqual(report.layers.count, 19)
        print("resnet20 BN re-estimation on 100 training images: \(report.summary)")
        // The float model's statistics came from the same distribution: small moves, not zero.
        XCTAssertGreaterThan(report.meanShift, 0)
        XCTAssertLessThan(report.meanShift, 0.1)
        XCTAssertLessThan(report.logVarianceChange, 0.25)
    }
}
