import XCTest
@testable import QuantOps

final class QuantizerTests: XCTestCase {
    private func randomWeight(_ shape: [Int] = [16, 8, 3, 3], seed: UInt64 = 7) -> Tensor {
        var random = SeededGenerator(seed: seed)
        return random.tensor(shape, scale: 0.1)
    }

    func testTernaryMatchesWorkedExample() throws {
        // mean|W| = 1.85/6, delta = 0.7 * that = 0.2158; kept: 0.5, 0.9, 0.3, alpha = 1.7/3.
        let weight = Tensor(shape: [2, 3], data: [0.1, -0.5, 0.9, -0.05, 0, 0.3])
        let (values, precision) = try WeightQuantizer.ternary.quantize(weight)
        let alpha: Float = 1.7 / 3
        XCTAssertEqual(precision, .ternary(alpha: alpha))
        XCTAssertEqual(values.data, [0, -alpha, alpha, 0, 0, alpha])
    }

    func testTernaryHasExactlyThreeLevelsWithTheTWNScale() throws {
        let weight = randomWeight()
        let (values, precision) = try WeightQuantizer.ternary.quantize(weight)
        guard case .ternary(let alpha) = precision else { return XCTFail("expected a ternary record") }
        XCTAssertEqual(Set(values.data), [-alpha, 0, alpha])
        let delta = 0.7 * weight.data.map { Double(abs($0)) }.reduce(0, +) / Double(weight.count)
        let kept = weight.data.filter { Double(abs($0)) > delta }
        XCTAssertEqual(Double(alpha), kept.map { Double(abs($0)) }.reduce(0, +) / Double(kept.count), accuracy: 1e-6)
        for (q, w) in zip(values.data, weight.data) {
            XCTAssertEqual(q, Double(abs(w)) > delta ? (w > 0 ? alpha : -alpha) : 0)
        }
    }

    func testBinaryHasTwoLevelsAtTheMeanMagnitude() throws {
        let weight = randomWeight()
        let (values, precision) = try WeightQuantizer.binary.quantize(weight)
        let alpha = Float(weight.data.map { Double(abs($0)) }.reduce(0, +) / Double(weight.count))
        XCTAssertEqual(precision, .binary(alpha: alpha))
        XCTAssertEqual(Set(values.data), [-alpha, alpha])
        for (q, w) in zip(values.data, weight.data) where w != 0 { XCTAssertEqual(q.sign, w.sign) }
    }

    func testDoReFaHasAtMostTwoToTheKLevelsAndFollowsItsFormula() throws {
        let weight = randomWeight([32, 16, 3, 3])
        let m = weight.data.map(abs).max() ?? 0
        for bits in 2...8 {
            let (values, precision) = try WeightQuantizer.dorefa(bits: bits).quantize(weight)
            let levels = Set(values.data)
            XCTAssertLessThanOrEqual(levels.count, 1 << bits, "\(bits) bits")
            XCTAssertGreaterThan(levels.count, (1 << bits) / 2, "\(bits) bits uses most of its levels")
            // The largest magnitude maps to an end of the grid: -m or +m.
            XCTAssertEqual(levels.map(abs).max(), m)
            let n = Float((1 << bits) - 1)
            for (q, w) in zip(values.data, weight.data) {
                XCTAssertEqual(q, m * ((2 / n) * (n * (w / (2 * m) + 0.5)).rounded(.toNearestOrEven) - 1))
                XCTAssertLessThanOrEqual(abs(q - w), m / n * 1.0001)
            }
            guard case .uniform(bits, .dorefa, let grid) = precision else { return XCTFail("expected a dorefa record") }
            XCTAssertEqual(grid.levels, 0...(1 << bits) - 1)
            XCTAssertEqual(grid.scales, [2 * m / n])
            XCTAssertEqual(grid.zeroPoints, [n / 2])
            // Every value is on the grid scale * (q - z) up to float rounding.
            for q in values.data {
                let code = q / grid.scales[0] + grid.zeroPoints[0]
                XCTAssertEqual(code, code.rounded(), accuracy: 1e-3)
            }
        }
        let twoBitLevels = Set(try WeightQuantizer.dorefa(bits: 2).quantize(weight).0.data).sorted()
        XCTAssertEqual(twoBitLevels.count, 4)
        for (level, expected) in zip(twoBitLevels, [-m, -m / 3, m / 3, m]) { XCTAssertEqual(level, expected, accuracy: 1e-6) }
    }

    func testUniformValuesLieExactlyOnTheirGrid() throws {
        let weight = randomWeight([12, 5, 3, 3], seed: 11)
        let perChannel = weight.count / 12
        for scheme in [QuantizationScheme.symmetric, .asymmetric] {
            for granularity in Granularity.allCases {
                for bits in [2, 3, 4, 8] {
                    let quantizer = WeightQuantizer.uniform(bits: bits, scheme: scheme, granularity: granularity)
                    let (values, precision) = try quantizer.quantize(weight)
                    guard case .uniform(bits, scheme, let grid) = precision else { return XCTFail("no grid record") }
                    XCTAssertEqual(grid.granularity, granularity)
                    XCTAssertEqual(grid.scales.count, granularity == .channel ? 12 : 1)
                    let expectedLevels = scheme == .symmetric ? -((1 << (bits - 1)) - 1)...((1 << (bits - 1)) - 1)
                        : 0...((1 << bits) - 1)
                    XCTAssertEqual(grid.levels, expectedLevels)
                    for index in 0..<weight.count {
                        let group = granularity == .channel ? index / perChannel : 0
                        let (scale, zeroPoint) = (grid.scales[group], grid.zeroPoints[group])
                        let code = (values.data[index] / scale + zeroPoint).rounded()
                        XCTAssertTrue(grid.levels.contains(Int(code)))
                        XCTAssertEqual(values.data[index], scale * (code - zeroPoint), "\(quantizer.label) index \(index)")
                        XCTAssertLessThanOrEqual(abs(values.data[index] - weight.data[index]), scale * 0.5001)
                        if scheme == .symmetric { XCTAssertEqual(zeroPoint, 0) }
                    }
                }
            }
        }
    }

    /// clip=mse picks, per channel, the candidate range with the least squared error: checked
    /// against a brute-force sweep of the same candidates with the quantization formula written
    /// out here in Double, and it beats the full range when one weight is an outlier.
    func testMSEClippingMinimizesTheSquaredErrorOverItsCandidates() throws {
        var weight = randomWeight([4, 6, 3, 3], seed: 13)
        weight.data[5] = 0.9                     // an outlier in channel 0, 9 times the scale
        let perChannel = weight.count / 4
        for scheme in [QuantizationScheme.symmetric, .asymmetric] {
            for bits in [3, 4] {
                let (clipped, precision) = try WeightQuantizer.uniform(bits: bits, scheme: scheme, granularity: .channel, clipping: .mse).quantize(weight)
                let (full, _) = try WeightQuantizer.uniform(bits: bits, scheme: scheme, granularity: .channel).quantize(weight)
                guard case .uniform(_, _, let grid) = precision else { return XCTFail("no grid record") }
                for channel in 0 ..< 4 {
                    let w = weight.data[channel * perChannel ..< (channel + 1) * perChannel].map(Double.init)
                    func quantized(_ factor: Double) -> [Double] {
                        if scheme == .symmetric {
                            let qMax = Double((1 << (bits - 1)) - 1), scale = w.map(abs).max()! * factor / qMax
                            return w.map { scale * min(max(($0 / scale).rounded(.toNearestOrEven), -qMax), qMax) }
                        }
                        let qMax = Double((1 << bits) - 1)
                        let (low, high) = (min(w.min()!, 0) * factor, max(w.max()!, 0) * factor)
                        let scale = (high - low) / qMax, zero = (-low / scale).rounded(.toNearestOrEven)
                        return w.map { scale * (min(max(($0 / scale).rounded(.toNearestOrEven) + zero, 0), qMax) - zero) }
                    }
                    func squaredError(_ values: [Double]) -> Double { zip(w, values).map { ($0 - $1) * ($0 - $1) }.reduce(0, +) }
                    let bruteForce = WeightQuantizer.clippingFactors.map { squaredError(quantized(Double($0))) }.min()!
                    let chosen = squaredError(clipped.data[channel * perChannel ..< (channel + 1) * perChannel].map(Double.init))
                    let whole = squaredError(full.data[channel * perChannel ..< (channel + 1) * perChannel].map(Double.init))
                    let context = "\(bits)-bit \(scheme.rawValue), channel \(channel)"
                    XCTAssertEqual(chosen, bruteForce, accuracy: 1e-6 * max(bruteForce, 1e-12) + 1e-12, context)
                    XCTAssertLessThanOrEqual(chosen, whole * (1 + 1e-6), context)
                    if channel == 0 { XCTAssertLessThan(chosen, 0.99 * whole, "\(context): the outlier's range is clipped") }
                    for value in clipped.data[channel * perChannel ..< (channel + 1) * perChannel] {
                        let code = value / grid.scales[channel] + grid.zeroPoints[channel]
                        XCTAssertEqual(code, code.rounded(), accuracy: 1e-3, "\(context): on the recorded grid")
                        XCTAssertTrue(grid.levels.contains(Int(code.rounded())), context)
                    }
                }
            }
        }
        XCTAssertEqual(WeightQuantizer.uniform(bits: 4, scheme: .asymmetric, granularity: .channel, clipping: .mse).label,
                       "4-bit asymmetric per channel, MSE-clipped")
    }

    func testPerChannelScalesFollowEachFiltersRange() throws {
        let weight = Tensor(shape: [2, 3], data: [0.5, -1.0, 0.25, 2, 3, 0])
        let (values, precision) = try WeightQuantizer.uniform(bits: 3, scheme: .symmetric, granularity: .channel)
            .quantize(weight)
        guard case .uniform(_, _, let grid) = precision else { return XCTFail("no grid record") }
        XCTAssertEqual(grid.scales, [1.0 / 3, 1.0])
        XCTAssertEqual(values.data, [Float(1.0 / 3) * 2, Float(1.0 / 3) * -3, Float(1.0 / 3) * 1, 2, 3, 0])

        let (asymmetric, asymmetricPrecision) = try WeightQuantizer.uniform(bits: 2, scheme: .asymmetric,
                                                                          granularity: .tensor).quantize(weight)
        guard case .uniform(_, _, let asymmetricGrid) = asymmetricPrecision else { return XCTFail("no grid record") }
        // Range [-1, 3]: S = 4/3, Z = round(0.75) = 1.
        XCTAssertEqual(asymmetricGrid.scales, [4.0 / 3])
        XCTAssertEqual(asymmetricGrid.zeroPoints, [1])
        XCTAssertEqual(asymmetric.data.map { $0 / Float(4.0 / 3) }, [0, -1, 0, 2, 2, 0])
    }

    func testZerosStayZerosWithoutNaN() throws {
        let zeros = Tensor(zeros: [4, 2, 3, 3])
        let quantizers: [WeightQuantizer] = [.ternary, .binary, .dorefa(bits: 4),
                                             .uniform(bits: 8, scheme: .symmetric, granularity: .channel),
                                             .uniform(bits: 8, scheme: .asymmetric, granularity: .tensor)]
        for quantizer in quantizers {
            let (values, _) = try quantizer.quantize(zeros)
            XCTAssertEqual(values.data, zeros.data, quantizer.label)
        }
        // One all-zero filter among others keeps its zeros with scale 0.
        var weight = randomWeight([4, 2, 3, 3])
        for k in 0..<18 { weight.data[k] = 0 }
        let (values, precision) = try WeightQuantizer.uniform(bits: 4, scheme: .asymmetric, granularity: .channel)
            .quantize(weight)
        XCTAssertEqual(Array(values.data[0..<18]), [Float](repeating: 0, count: 18))
        XCTAssertFalse(values.data.contains { $0.isNaN })
        guard case .uniform(_, _, let grid) = precision else { return XCTFail("no grid record") }
        XCTAssertEqual(grid.scales[0], 0)
    }

    func testNonFiniteWeightsAndBadBitWidthsAreRefusedClearly() {
        var weight = randomWeight([2, 2, 1, 1])
        weight.data[3] = .nan
        XCTAssertThrowsError(try WeightQuantizer.ternary.quantize(weight)) { error in
            XCTAssertTrue("\(error)".contains("NaN"), "\(error)")
            XCTAssertTrue("\(error)".contains("index 3"), "\(error)")
        }
        weight.data[3] = .infinity
        XCTAssertThrowsError(try WeightQuantizer.dorefa(bits: 4).quantize(weight))
        let fine = randomWeight([2, 2, 1, 1])
        for quantizer: WeightQuantizer in [.dorefa(bits: 0), .dorefa(bits: 17),
                                           .uniform(bits: 1, scheme: .symmetric, granularity: .tensor)] {
            XCTAssertThrowsError(try quantizer.quantize(fine)) { error in
                XCTAssertTrue("\(error)".contains("choose bits"), "\(error)")
            }
        }
        XCTAssertThrowsError(try WeightQuantizer.ternary.quantize(Tensor(zeros: [0, 3])))
    }

    func testStatisticsAndRelativeError() {
        let tensor = Tensor(shape: [6], data: [-1, 0, 0, 1, 1, 2])
        let statistics = WeightStatistics(tensor)
        XCTAssertEqual(statistics.min, -1)
        XCTAssertEqual(statistics.max, 2)
        XCTAssertEqual(statistics.mean, 0.5, accuracy: 1e-12)
        XCTAssertEqual(statistics.std, (5.5 / 6).squareRoot(), accuracy: 1e-12)
        XCTAssertEqual(statistics.zeroFraction, 2.0 / 6, accuracy: 1e-12)
        XCTAssertEqual(statistics.distinctLevels, 4)
        let histogram = statistics.histogram(bins: 3)
        XCTAssertEqual(histogram.map(\.count), [1, 2, 3])
        XCTAssertEqual(histogram.last?.upper, 2)

        let reference = Tensor(shape: [2], data: [3, 4])
        XCTAssertEqual(WeightStatistics.relativeError(Tensor(shape: [2], data: [3, 5]), reference), 0.2, accuracy: 1e-12)
        XCTAssertEqual(WeightStatistics.relativeError(reference, reference), 0)
        XCTAssertTrue(WeightStatistics.relativeError(reference, Tensor(zeros: [3])).isNaN)
    }

    func testChannelScalingKeepsTheIntegerCodes() throws {
        let weight = randomWeight([3, 2, 3, 3])
        let factors: [Float] = [0.5, 1, 2]
        for quantizer: WeightQuantizer in [.ternary, .dorefa(bits: 3),
                                           .uniform(bits: 4, scheme: .asymmetric, granularity: .tensor)] {
            let (values, precision) = try quantizer.quantize(weight)
            guard case .uniform(_, _, let grid) = precision.scaledPerOutputChannel(by: factors) else {
                return XCTFail("expected a per-channel grid")
            }
            XCTAssertEqual(grid.granularity, .channel)
            for index in 0..<weight.count {
                let channel = index / 18
                let scaled = values.data[index] * factors[channel]
                let code = scaled / grid.scales[channel] + grid.zeroPoints[channel]
                XCTAssertEqual(code, code.rounded(), accuracy: 1e-3, quantizer.label)
                XCTAssertTrue(grid.levels.contains(Int(code.rounded())))
            }
        }
    }
}
