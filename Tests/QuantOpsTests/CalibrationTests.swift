import Foundation
import XCTest
@testable import QuantOps

/// Range estimators on synthetic distributions whose answers are known in closed form.
final class CalibrationTests: XCTestCase {
    /// Box-Muller normal samples, so that the tails are those of a true Gaussian.
    static func gaussian(_ count: Int, seed: UInt64) -> [Float] {
        var random = SeededGenerator(seed: seed)
        return (0..<count).map { _ in
            let u = Double.random(in: Double.ulpOfOne..<1, using: &random)
            let v = Double.random(in: 0..<1, using: &random)
            return Float((-2 * log(u)).squareRoot() * cos(2 * Double.pi * v))
        }
    }

    static func statistics(_ values: [Float], imagesOf size: Int, batch: Int) -> TensorStatistics {
        var statistics = TensorStatistics()
        let perBatch = size * batch
        var start = 0
        while start < values.count {
            let end = min(values.count, start + perBatch)
            statistics.observe(Tensor(shape: [(end - start) / size, size], data: Array(values[start..<end])))
            start = end
        }
        return statistics
    }

    func testMinMaxIsTheExtremes() {
        let values: [Float] = [0.5, -2.25, 7, 3, 0, -1]
        let statistics = Self.statistics(values, imagesOf: 2, batch: 1)
        XCTAssertEqual(RangeEstimator.minMax.range(from: statistics, levels: 256), -2.25...7)
    }

    func testMeanStdIsMeanPlusMinusKSigma() {
        var random = SeededGenerator(seed: 3)
        let values = random.uniform(40_000, in: -1...3)
        let statistics = Self.statistics(values, imagesOf: 100, batch: 7)
        let mean = values.reduce(0.0) { $0 + Double($1) } / Double(values.count)
        let variance = values.reduce(0.0) { $0 + (Double($1) - mean) * (Double($1) - mean) } / Double(values.count)
        let range = RangeEstimator.meanStd(k: 1).range(from: statistics, levels: 256)
        XCTAssertEqual(Double(range.lowerBound), mean - variance.squareRoot(), accuracy: 1e-4)
        XCTAssertEqual(Double(range.upperBound), mean + variance.squareRoot(), accuracy: 1e-4)
        // Uniform on [-1, 3]: mean 1, sigma 4/sqrt(12); k = 3 reaches past the data, so the extremes bound it.
        let wide = RangeEstimator.meanStd(k: 3).range(from: statistics, levels: 256)
        XCTAssertEqual(wide.lowerBound, statistics.minimum)
        XCTAssertEqual(wide.upperBound, statistics.maximum)
    }

    func testPercentileOfUniformMagnitudes() {
        var random = SeededGenerator(seed: 5)
        let values = random.uniform(200_000, in: 0...1)
        let statistics = Self.statistics(values, imagesOf: 1000, batch: 10)
        let range = RangeEstimator.percentile(99).range(from: statistics, levels: 256)
        XCTAssertEqual(range.lowerBound, statistics.minimum)
        XCTAssertEqual(range.upperBound, 0.99, accuracy: 0.003)
        // Two-sided data clips both ends at the magnitude percentile.
        let symmetric = random.uniform(200_000, in: -2...2)
        let twoSided = RangeEstimator.percentile(90).range(from: Self.statistics(symmetric, imagesOf: 1000, batch: 3), levels: 256)
        XCTAssertEqual(twoSided.lowerBound, -1.8, accuracy: 0.01)
        XCTAssertEqual(twoSided.upperBound, 1.8, accuracy: 0.01)
    }

    func testEntropyThresholdIgnoresOutliersOfAGaussian() {
        var values = Self.gaussian(200_000, seed: 11)
        values += [Float](repeating: 60, count: 20) + [Float](repeating: -45, count: 20)
        let statistics = Self.statistics(values, imagesOf: 40, batch: 100)
        XCTAssertEqual(statistics.maxMagnitude, 60)
        let range = RangeEstimator.entropy.range(from: statistics, levels: 128)
        // The bulk ends near 4.5 sigma; the threshold lands there, far from the outliers at 45 and 60.
        XCTAssertGreaterThan(range.upperBound, 2.5)
        XCTAssertLessThan(range.upperBound, 8)
        XCTAssertEqual(range.lowerBound, -range.upperBound)
        // Without outliers a Gaussian's 8-bit threshold still clips the sparse far tail.
        let clean = Self.statistics(Self.gaussian(200_000, seed: 12), imagesOf: 1000, batch: 16)
        let cleanRange = RangeEstimator.entropy.range(from: clean, levels: 128)
        XCTAssertLessThanOrEqual(cleanRange.upperBound, clean.maximum)
        XCTAssertGreaterThan(cleanRange.upperBound, 2.5)
    }

    func testEntropyThresholdOfRectifiedDataIsNotDrawnToTheZeroSpike() {
        // ReLU of a standard normal: half the values are exact zeros, the rest a half-normal.
        let values = Self.gaussian(200_000, seed: 13).map { max($0, 0) }
        let statistics = Self.statistics(values, imagesOf: 1000, batch: 8)
        XCTAssertEqual(Double(statistics.histogram.zeros), 100_000, accuracy: 1000)
        let range = RangeEstimator.entropy.range(from: statistics, levels: 256)
        XCTAssertEqual(range.lowerBound, 0)
        XCTAssertGreaterThan(range.upperBound, 2.5, "an 8-bit unsigned grid keeps the bulk of a half-normal")
        XCTAssertLessThanOrEqual(range.upperBound, statistics.maximum)
    }

    func testMovingAverageReplaysBatchesOfPerImageExtremes() {
        // Images with maxima 1, 2, 3, 4 and minima -1, -2, -3, -4.
        let values: [Float] = [1, -1, 2, -2, 3, -3, 4, -4]
        let statistics = Self.statistics(values, imagesOf: 2, batch: 1)
        // Batches of 2: extremes (2, 4) -> 2, then 0.5 * 2 + 0.5 * 4 = 3.
        XCTAssertEqual(RangeEstimator.movingAverage(momentum: 0.5, batchSize: 2).range(from: statistics, levels: 256), -3...3)
        // Batches of 1: 1, 1.5, 2.25, 3.125: the batch size changes the result, as documented.
        XCTAssertEqual(RangeEstimator.movingAverage(momentum: 0.5, batchSize: 1).range(from: statistics, levels: 256), -3.125...3.125)
        XCTAssertEqual(RangeEstimator.movingAverage(momentum: 0, batchSize: 4).range(from: statistics, levels: 256), -4...4)
    }

    func testStatisticsDoNotDependOnBatchingOrOrder() {
        var values = Self.gaussian(64 * 500, seed: 21)
        values[12_345] = 37.5
        let whole = Self.statistics(values, imagesOf: 500, batch: 64)
        XCTAssertEqual(Self.statistics(values, imagesOf: 500, batch: 1), whole)
        XCTAssertEqual(Self.statistics(values, imagesOf: 500, batch: 7), whole)
        // Reversed image order: the histogram grows along another path but ends identical.
        var reversed: [Float] = []
        for image in (0..<64).reversed() { reversed += values[(image * 500)..<((image + 1) * 500)] }
        let backwards = Self.statistics(reversed, imagesOf: 500, batch: 5)
        XCTAssertEqual(backwards.histogram, whole.histogram)
        for estimator in [RangeEstimator.minMax, .percentile(99.9), .meanStd(k: 3), .entropy] {
            XCTAssertEqual(estimator.range(from: backwards, levels: 256), estimator.range(from: whole, levels: 256), estimator.label)
        }
    }

    func testHistogramBinsAreExact() {
        var histogram = MagnitudeHistogram(binCount: 8, exponent: 0)
        let small: [Float] = [0.1, 0, 0.3, 0.99, 0]
        small.withUnsafeBufferPointer { histogram.add($0) }
        histogram.grow(toHold: 3.5)
        let large: [Float] = [3.5, -2.0]
        large.withUnsafeBufferPointer { histogram.add($0) }
        // Range [0, 4) in 8 bins of 0.5: 0.1, 0.3 -> 0; 0.99 -> 1; 2.0 -> 4; 3.5 -> 7.
        XCTAssertEqual(histogram.exponent, 2)
        XCTAssertEqual(histogram.counts, [2, 1, 0, 0, 1, 0, 0, 1])
        XCTAssertEqual(histogram.zeros, 2)
        XCTAssertEqual(histogram.total, 5)
        // Zeros count toward quantiles: 2 of 7 values are 0.
        XCTAssertEqual(histogram.quantile(2.0 / 7), 0)
        XCTAssertEqual(histogram.resampled(bins: 2, upper: 4), [3, 2])
    }

    func testCalibrationOfAPretrainedModelIgnoresBatchSizeAndIsCachedByModelState() throws {
        var model = try QuantizerFixtures.zooModel("resnet20")
        try ModelTransforms.foldBatchNorm(&model)
        let images = try QuantizerFixtures.testImages(24, normalization: model.normalization)
        func batches(_ size: Int) throws -> CalibrationStatistics {
            let count = (24 + size - 1) / size
            return try XCTUnwrap(ActivationCalibration.collect(model, batchCount: count) { index in
                let rows = (index * size)..<min(24, (index + 1) * size)
                return Tensor(shape: [rows.count, 3, 32, 32], data: Array(images.data[(rows.lowerBound * 3072)..<(rows.upperBound * 3072)]))
            })
        }
        let small = try batches(5), large = try batches(24)
        XCTAssertEqual(small.images, 24)
        XCTAssertEqual(Set(small.tensors.keys), Set(ActivationQuantization.points(in: model).map(\.name)))
        for (name, statistics) in large.tensors {
            let other = try XCTUnwrap(small.tensors[name])
            for estimator in [RangeEstimator.minMax, .percentile(99.99), .meanStd(k: 3)] {
                let a = estimator.range(from: statistics, levels: 256), b = estimator.range(from: other, levels: 256)
                let scale = max(1e-6, statistics.maxMagnitude)
                XCTAssertEqual(a.lowerBound, b.lowerBound, accuracy: 1e-4 * scale, "\(name) \(estimator.label)")
                XCTAssertEqual(a.upperBound, b.upperBound, accuracy: 1e-4 * scale, "\(name) \(estimator.label)")
            }
        }
        // The cache key follows the weights and ignores activation quantizers.
        var quantized = model
        try ActivationQuantization.quantize(&quantized, with: ActivationQuantizer(bits: 8, scheme: .asymmetric))
        XCTAssertEqual(CalibrationKey(model: quantized, data: "x"), CalibrationKey(model: model, data: "x"))
        try ModelTransforms.quantize(&quantized, layers: [3], with: .uniform(bits: 4, scheme: .symmetric, granularity: .channel))
        XCTAssertNotEqual(CalibrationKey(model: quantized, data: "x"), CalibrationKey(model: model, data: "x"))
        XCTAssertNotEqual(CalibrationKey(model: model, data: "y"), CalibrationKey(model: model, data: "x"))
    }
}
