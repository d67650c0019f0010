import Foundation
import XCTest
@testable import QuantOps

/// Activation fake quantization: values on the grid, placement at the tensors a fused runtime stores.
final class ActivationQuantizerTests: XCTestCase {
    func testAsymmetricValuesLieExactlyOnTheGrid() throws {
        var random = SeededGenerator(seed: 1)
        let input = Tensor(shape: [2, 3, 10, 10], data: random.uniform(600, in: -2...5))
        let quantizer = ActivationQuantizer(bits: 8, scheme: .asymmetric, range: -1...3)
        let grid = try XCTUnwrap(quantizer.grid())
        let scale = grid.scales[0], zeroPoint = grid.zeroPoints[0]
        XCTAssertEqual(scale, 4 / 255, accuracy: 1e-7)
        XCTAssertEqual(zeroPoint, (255 / 4.0 as Float).rounded())
        let output = try quantizer.apply(input, at: "t")
        for (x, y) in zip(input.data, output.data) {
            let q = y / scale + zeroPoint
            XCTAssertEqual(q, q.rounded(), accuracy: 1e-3, "\(y) is off the grid")
            XCTAssertTrue((0...255).contains(Int(q.rounded())))
            // Inside the range the error is at most half a step; outside, the value clamps to an end.
            let low = scale * (0 - zeroPoint), high = scale * (255 - zeroPoint)
            if x >= low && x <= high {
                XCTAssertLessThanOrEqual(abs(x - y), scale / 2 + 1e-6)
            } else {
                XCTAssertEqual(y, x < low ? low : high, accuracy: 1e-6)
            }
        }
        // Zero is exactly representable.
        XCTAssertEqual(try quantizer.apply(Tensor(zeros: [1, 1, 1, 4]), at: "t").data, [0, 0, 0, 0])
    }

    func testSymmetricGridAndLowBitClamping() throws {
        let quantizer = ActivationQuantizer(bits: 4, scheme: .symmetric, range: -0.5...3.5)
        let grid = try XCTUnwrap(quantizer.grid())
        XCTAssertEqual(grid.scales[0], 0.5)
        XCTAssertEqual(grid.zeroPoints[0], 0)
        XCTAssertEqual(grid.levels, -7...7)
        let output = try quantizer.apply(Tensor(shape: [1, 1, 1, 6], data: [-9, -0.26, 0.25, 0.75, 1.3, 100]), at: "t")
        // Halves round to even: 0.25/0.5 = 0.5 -> 0, 0.75/0.5 = 1.5 -> 2.
        XCTAssertEqual(output.data, [-3.5, -0.5, 0, 1, 1.5, 3.5])
    }

    func testUncalibratedQuantizerRefusesWithTheFix() {
        let quantizer = ActivationQuantizer(bits: 8, scheme: .asymmetric)
        XCTAssertThrowsError(try quantizer.apply(Tensor(zeros: [1, 1, 1, 1]), at: "layer1.0.relu1")) { error in
            XCTAssertTrue("\(error)".contains("layer1.0.relu1"), "\(error)")
            XCTAssertEqual((error as? EngineError)?.unmet, .calibratedActivations, "\(error)")
        }
        XCTAssertThrowsError(try ActivationQuantizer.validate(bits: 8, scheme: .dorefa))
        XCTAssertThrowsError(try ActivationQuantizer.validate(bits: 1, scheme: .asymmetric))
    }

    func testPlacementFollowsTheFusedRuntimeOnResNet20() throws {
        var model = try QuantizerFixtures.zooModel("resnet20")
        try ModelTransforms.foldBatchNorm(&model)
        let points = ActivationQuantization.points(in: model)
        // Input, stem, two fused chains per basic block (9 blocks), global pooling; not the logits.
        XCTAssertEqual(points.count, 1 + 1 + 18 + 1)
        XCTAssertEqual(points.first?.layer, 0)
        XCTAssertEqual(points.compactMap(\.layer).filter { $0 > 0 }, Array(1...19))
        XCTAssertFalse(points.contains { $0.nodeIndex == model.nodes.count - 1 })
        let original = model
        let placed = try ActivationQuantization.quantize(&model, with: ActivationQuantizer(bits: 8, scheme: .asymmetric))
        XCTAssertEqual(placed.count, 21)
        XCTAssertEqual(model.nodes.count, original.nodes.count + 21)
        XCTAssertEqual(ActivationQuantization.removingQuantizers(model), original)
        // Every consumer reads the quantized tensor: no node but its quantizer reads a quantized producer.
        for (index, node) in model.nodes.enumerated() where node.operation.isFakeQuantize {
            XCTAssertEqual(model.consumers(of: node.inputs[0]), [index], node.name)
        }
        // A selector places only those layers' outputs; layer 1 also takes the network input.
        var partial = original
        try ActivationQuantization.quantize(&partial, with: ActivationQuantizer(bits: 8, scheme: .asymmetric), layers: [1, 5])
        XCTAssertEqual(ActivationQuantization.quantizers(in: partial).count, 3)
        ActivationQuantization.keepFloat(&model, layers: [1])
        XCTAssertEqual(ActivationQuantization.quantizers(in: model).count, 19)
    }

    func testSixteenBitActivationsKeepTheFloatLogits() throws {
        var model = try QuantizerFixtures.zooModel("resnet20")
        try ModelTransforms.foldBatchNorm(&model)
        let images = try QuantizerFixtures.testImages(8, normalization: model.normalization)
        let reference = try ForwardPass.logits(model, input: images)
        var quantized = model
        try ActivationQuantization.quantize(&quantized, with: ActivationQuantizer(bits: 16, scheme: .asymmetric))
        XCTAssertThrowsError(try ForwardPass.logits(quantized, input: images))
        let statistics = try XCTUnwrap(ActivationCalibration.collect(quantized, batchCount: 1) { _ in images })
        try ActivationCalibration.apply(.minMax, statistics: statistics, to: &quantized)
        let sixteen = try ForwardPass.logits(quantized, input: images)
        XCTAssertLessThan(EngineFixtures.relativeError(sixteen.data, reference.data), 1e-3)
        // At 4 bits the logits move visibly: the quantizers are really in the path.
        try ActivationQuantization.quantize(&quantized, with: ActivationQuantizer(bits: 4, scheme: .asymmetric))
        try ActivationCalibration.apply(.minMax, statistics: statistics, to: &quantized)
        let four = try ForwardPass.logits(quantized, input: images)
        XCTAssertGreaterThan(EngineFixtures.relativeError(four.data, reference.data), 1e-2)
    }
}
