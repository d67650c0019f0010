import Foundation
import XCTest
@testable import QuantOps

/// Cross-layer equalization keeps the float function and balances the paired channel ranges.
final class EqualizationTests: XCTestCase {
    func testEqualizingResNet20LeavesTheFloatLogitsUnchanged() throws {
        var model = try QuantizerFixtures.zooModel("resnet20")
        try ModelTransforms.foldBatchNorm(&model)
        let images = try QuantizerFixtures.testImages(8, normalization: model.normalization)
        let before = try ForwardPass.logits(model, input: images)
        let original = model
        let pairs = try Equalization.apply(&model)
        XCTAssertEqual(pairs.count, 9, "conv1 -> ReLU -> conv2 in each basic block")
        XCTAssertNotEqual(model, original)
        let after = try ForwardPass.logits(model, input: images)
        XCTAssertLessThan(EngineFixtures.relativeError(after.data, before.data), 1e-5)

        // Both sides of each pair now have the same per-channel range, sqrt(r1 * r2).
        for pair in pairs {
            guard case .conv(let first)? = model.nodeIndex(named: pair.firstName).map({ model.nodes[$0].operation }),
                  case .conv(let second)? = model.nodeIndex(named: pair.secondName).map({ model.nodes[$0].operation })
            else { return XCTFail("pair \(pair.firstName) -> \(pair.secondName) is not two convolutions") }
            let channels = first.outChannels, perFirst = first.weight.count / channels
            let kernel = second.weight.count / (second.outChannels * channels)
            for j in 0..<channels {
                let r1 = first.weight.data[(j * perFirst)..<((j + 1) * perFirst)].map(abs).max() ?? 0
                var r2: Float = 0
                for o in 0..<second.outChannels {
                    let start = (o * channels + j) * kernel
                    r2 = max(r2, second.weight.data[start..<(start + kernel)].map(abs).max() ?? 0)
                }
                XCTAssertEqual(r1, r2, accuracy: 1e-5 * max(r1, r2), "\(pair.firstName) channel \(j)")
            }
        }
        // Equalizing again changes nothing: every pair is already balanced.
        var again = model
        let second = try Equalization.apply(&again)
        XCTAssertTrue(second.allSatisfy { $0.scales.allSatisfy { abs($0 - 1) < 1e-4 } })
    }

    /// DFQ's objective: the summed product of per-channel relative ranges r_j / max_j r_j of the two
    /// layers, which the equalizing scales maximize.
    func testEqualizationRaisesThePairedPrecisionObjective() throws {
        var model = try QuantizerFixtures.zooModel("resnet20")
        try ModelTransforms.foldBatchNorm(&model)
        func objective(_ model: Model, _ first: String, _ second: String) -> Double {
            guard case .conv(let a)? = model.nodeIndex(named: first).map({ model.nodes[$0].operation }),
                  case .conv(let b)? = model.nodeIndex(named: second).map({ model.nodes[$0].operation }) else { return -1 }
            let channels = a.outChannels, perFirst = a.weight.count / channels
            let kernel = b.weight.count / (b.outChannels * channels)
            var r1 = [Double](repeating: 0, count: channels), r2 = [Double](repeating: 0, count: channels)
            for j in 0..<channels {
                r1[j] = Double(a.weight.data[(j * perFirst)..<((j + 1) * perFirst)].map(abs).max() ?? 0)
                for o in 0..<b.outChannels {
                    let start = (o * channels + j) * kernel
                    r2[j] = max(r2[j], Double(b.weight.data[start..<(start + kernel)].map(abs).max() ?? 0))
                }
            }
            let m1 = r1.max() ?? 1, m2 = r2.max() ?? 1
            return zip(r1, r2).reduce(0) { $0 + ($1.0 / m1) * ($1.1 / m2) }
        }
        let original = model
        let pairs = try Equalization.apply(&model)
        for pair in pairs {
            let before = objective(original, pair.firstName, pair.secondName)
            let after = objective(model, pair.firstName, pair.secondName)
            XCTAssertGreaterThanOrEqual(after, before * (1 - 1e-6), pair.firstName)
        }
        XCTAssertGreaterThan(pairs.map { objective(model, $0.firstName, $0.secondName) }.reduce(0, +),
                             pairs.map { objective(original, $0.firstName, $0.secondName) }.reduce(0, +) * 1.1)
    }

    func testEqualizationRefusesWhatItWouldBreak() throws {
        let model = try QuantizerFixtures.zooModel("resnet20")
        var unfolded = model
        XCTAssertThrowsError(try Equalization.apply(&unfolded)) { error in
            XCTAssertEqual((error as? QuantizationError)?.unmet, .foldedBatchNorms, "\(error)")
        }
        XCTAssertEqual(unfolded, model)
        var quantized = model
        try ModelTransforms.foldBatchNorm(&quantized)
        try ModelTransforms.quantize(&quantized, layers: [2], with: .uniform(bits: 8, scheme: .symmetric, granularity: .channel))
        XCTAssertThrowsError(try Equalization.apply(&quantized)) { error in
            XCTAssertEqual((error as? QuantizationError)?.unmet, .floatWeights, "\(error)")
        }
    }
}
