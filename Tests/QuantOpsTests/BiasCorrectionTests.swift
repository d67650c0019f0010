import Foundation
import XCTest
@testable import QuantOps

/// Data-free bias correction: clipped-normal moments and removal of the expected output shift.
final class BiasCorrectionTests: XCTestCase {
    func testRectifiedNormalMoments() {
        let standard = BiasCorrection.rectified(ChannelPrior(mean: [0, 2, -1, 3], std: [1, 0, 2, 1e-9]))
        // E[ReLU(z)] = 1/sqrt(2 pi) and E[ReLU(z)^2] = 1/2 for a standard normal.
        XCTAssertEqual(standard.mean[0], 1 / (2 * Double.pi).squareRoot(), accuracy: 1e-12)
        XCTAssertEqual(standard.std[0], (0.5 - 1 / (2 * Double.pi)).squareRoot(), accuracy: 1e-12)
        XCTAssertEqual(standard.mean[1], 2)
        XCTAssertEqual(standard.std[1], 0)
        // N(-1, 4): mu Phi(mu/sigma) + sigma phi(mu/sigma).
        let alpha = -0.5
        let expected = -1 * 0.5 * erfc(-alpha / 2.0.squareRoot()) + 2 * exp(-alpha * alpha / 2) / (2 * Double.pi).squareRoot()
        XCTAssertEqual(standard.mean[2], expected, accuracy: 1e-12)
        XCTAssertEqual(standard.mean[3], 3, accuracy: 1e-6)
    }

    /// input -> conv1 (identity, 1x1) -> ReLU -> conv2 (1x1), with conv1's output distributed as
    /// its prior says, so the measured mean output shift is what the correction should remove.
    func testCorrectionRemovesTheExpectedShiftOfAQuantizedLayer() throws {
        let channels = 6, outputs = 5
        var random = SeededGenerator(seed: 9)
        let means: [Double] = [0.5, -0.3, 1.2, 0, 2, -1]
        let stds: [Double] = [1, 0.5, 0.8, 1.5, 0.3, 1]
        var identity = [Float](repeating: 0, count: channels * channels)
        for c in 0..<channels { identity[c * channels + c] = 1 }
        let first = Conv2D(weight: Tensor(shape: [channels, channels, 1, 1], data: identity))
        let second = Conv2D(weight: Tensor(shape: [outputs, channels, 1, 1], data: random.normal(outputs * channels, scale: 0.3)),
                            bias: Tensor(zeros: [outputs]))
        let float = Model(name: "pair", nodes: [
            Node(name: "input", operation: .input, inputs: []),
            Node(name: "conv1", operation: .conv(first), inputs: [0]),
            Node(name: "relu", operation: .relu, inputs: [1]),
            Node(name: "conv2", operation: .conv(second), inputs: [2]),
        ], normalization: Normalization(mean: [0], std: [1]))
        var quantized = float
        try ModelTransforms.quantize(&quantized, layers: [2], with: .uniform(bits: 3, scheme: .symmetric, granularity: .tensor))

        let pixels = 64 * 64
        var data = [Float](repeating: 0, count: channels * pixels)
        for c in 0..<channels {
            for p in 0..<pixels {
                let u = Double.random(in: Double.ulpOfOne..<1, using: &random), v = Double.random(in: 0..<1, using: &random)
                data[c * pixels + p] = Float(means[c] + stds[c] * (-2 * log(u)).squareRoot() * cos(2 * Double.pi * v))
            }
        }
        let input = Tensor(shape: [1, channels, 64, 64], data: data)
        func meanShift(_ model: Model) throws -> [Double] {
            let a = try ForwardPass.run(model, input: input), b = try ForwardPass.run(float, input: input)
            return (0..<outputs).map { o in
                (0..<pixels).reduce(0.0) { $0 + Double(a.data[o * pixels + $1] - b.data[o * pixels + $1]) } / Double(pixels)
            }
        }
        let before = try meanShift(quantized)
        let priors: ChannelPriors = ["conv1": ChannelPrior(mean: means, std: stds)]
        let corrected = try BiasCorrection.correct(&quantized, reference: float, priors: priors)
        XCTAssertEqual(corrected.map(\.layer), [2])
        let after = try meanShift(quantized)
        let largestBefore = before.map(abs).max() ?? 0, largestAfter = after.map(abs).max() ?? 0
        XCTAssertGreaterThan(largestBefore, 0.01)
        XCTAssertLessThan(largestAfter, 0.15 * largestBefore, "before \(before), after \(after)")
    }

    func testPriorsComeFromTheLoadedBatchNormsAndFollowEqualization() throws {
        let loaded = try QuantizerFixtures.zooModel("resnet20")
        var priors = BiasCorrection.priors(fromBatchNormsOf: loaded)
        XCTAssertEqual(priors.count, 19)
        guard let bnIndex = loaded.nodeIndex(named: "layer1.0.bn1"), case .batchNorm(let norm) = loaded.nodes[bnIndex].operation else {
            return XCTFail("resnet20 has no layer1.0.bn1")
        }
        XCTAssertEqual(priors["layer1.0.conv1"]?.mean, norm.beta.data.map(Double.init))
        var model = loaded
        try ModelTransforms.foldBatchNorm(&model)
        let pairs = try Equalization.apply(&model)
        let original = priors
        BiasCorrection.rescale(&priors, for: pairs)
        let scales = try XCTUnwrap(pairs.first { $0.firstName == "layer1.0.conv1" }).scales
        for j in scales.indices {
            XCTAssertEqual(priors["layer1.0.conv1"]?.mean[j] ?? 0, (original["layer1.0.conv1"]?.mean[j] ?? 0) / Double(scales[j]), accuracy: 1e-9)
        }
    }
}
