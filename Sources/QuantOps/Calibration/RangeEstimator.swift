import Foundation

/// How a calibrated activation range is chosen from a tensor's statistics (methods.md §4).
///
/// Every estimator except `movingAverage` depends only on the set of observed values, so the
/// batch size of calibration does not change its result. The moving average is defined over
/// batches, and replays the per-image extremes in batches of `batchSize`.
public enum RangeEstimator: Sendable, Equatable {
    /// The extreme values seen.
    case minMax
    /// `r <- momentum * r + (1 - momentum) * batch extreme`, starting from the first batch.
    case movingAverage(momentum: Double, batchSize: Int)
    /// The `percent` percentile of |x|, clipping both ends at that magnitude.
    case percentile(Double)
    /// `mean +- k * sigma`, within the extremes seen.
    case meanStd(k: Double)
    /// TensorRT's KL-divergence threshold over a 2048-bin histogram of |x| on [0, max|x|].
    case entropy

    public static let entropyBins = 2048

    public var label: String {
        switch self {
        case .minMax: return "minmax"
        case .movingAverage(let momentum, let batchSize): return "ema momentum=\(momentum) batch=\(batchSize)"
        case .percentile(let percent): return "percentile p=\(percent)"
        case .meanStd(let k): return "meanstd k=\(k)"
        case .entropy: return "entropy"
        }
    }

    /// The clipping range for a quantizer with `levels` grid points over the range.
    public func range(from statistics: TensorStatistics, levels: Int) -> ClosedRange<Float> {
        guard statistics.count > 0, statistics.minimum <= statistics.maximum else { return 0...0 }
        let low = statistics.minimum, high = statistics.maximum
        switch self {
        case .minMax:
            return low...high
        case .movingAverage(let momentum, let batchSize):
            let size = max(1, batchSize)
            var averageLow = 0.0, averageHigh = 0.0
            var start = 0
            while start < statistics.imageMinima.count {
                let end = min(statistics.imageMinima.count, start + size)
                let batchLow = Double(statistics.imageMinima[start..<end].min() ?? 0)
                let batchHigh = Double(statistics.imageMaxima[start..<end].max() ?? 0)
                if start == 0 {
                    averageLow = batchLow
                    averageHigh = batchHigh
                } else {
                    averageLow = momentum * averageLow + (1 - momentum) * batchLow
                    averageHigh = momentum * averageHigh + (1 - momentum) * batchHigh
                }
                start = end
            }
            return Float(averageLow)...Float(averageHigh)
        case .percentile(let percent):
            let threshold = Float(statistics.histogram.quantile(min(100, max(0, percent)) / 100))
            return Self.clip(low...high, magnitude: threshold)
        case .meanStd(let k):
            let mean = statistics.mean, spread = k * statistics.standardDeviation
            let clippedLow = max(Double(low), mean - spread), clippedHigh = min(Double(high), mean + spread)
            return Float(min(clippedLow, clippedHigh))...Float(max(clippedLow, clippedHigh))
        case .entropy:
            let upper = Double(statistics.maxMagnitude)
            guard upper > 0 else { return low...high }
            let histogram = statistics.histogram.resampled(bins: Self.entropyBins, upper: upper)
            let threshold = Self.entropyThreshold(histogram, upper: upper, levels: levels)
            return Self.clip(low...high, magnitude: Float(threshold))
        }
    }

    /// The grid points a quantizer spends on the magnitude range that the |x| histogram covers:
    /// all of them for a non-negative tensor under an asymmetric grid, half otherwise.
    public static func magnitudeLevels(bits: Int, scheme: QuantizationScheme, statistics: TensorStatistics) -> Int {
        let all = 1 << bits
        return scheme == .asymmetric && statistics.minimum >= 0 ? all : all / 2
    }

    static func clip(_ range: ClosedRange<Float>, magnitude: Float) -> ClosedRange<Float> {
        let low = max(range.lowerBound, -magnitude), high = min(range.upperBound, magnitude)
        return min(low, high)...max(low, high)
    }

    /// For each candidate bin count i: P = the first i bins with the tail added to the last,
    /// Q = those i bins merged into `levels` groups and spread back evenly over each group's
    /// nonzero bins; the threshold is the upper edge of the i with the least KL(P || Q).
    public static func entropyThreshold(_ histogram: [Double], upper: Double, levels: Int) -> Double {
        let bins = histogram.count
        guard bins > 0 else { return upper }
        let width = upper / Double(bins)
        let levels = max(2, levels)
        let first = min(bins, max(128, levels))
        var suffix = [Double](repeating: 0, count: bins + 1)
        for bin in stride(from: bins - 1, through: 0, by: -1) { suffix[bin] = suffix[bin + 1] + histogram[bin] }
        var best = (divergence: Double.infinity, bins: bins)
        var reference = [Double](repeating: 0, count: bins)
        var expanded = [Double](repeating: 0, count: bins)
        for candidate in first...bins {
            for bin in 0..<candidate { reference[bin] = histogram[bin] }
            reference[candidate - 1] += suffix[candidate]
            // Merge the candidate bins into `levels` groups of (almost) equal width.
            for group in 0..<levels {
                let start = group * candidate / levels
                let end = (group + 1) * candidate / levels
                guard end > start else { continue }
                var total = 0.0
                var nonzero = 0
                for bin in start..<end where histogram[bin] > 0 {
                    total += histogram[bin]
                    nonzero += 1
                }
                let share = nonzero > 0 ? total / Double(nonzero) : 0
                for bin in start..<end { expanded[bin] = histogram[bin] > 0 ? share : 0 }
            }
            let divergence = klDivergence(reference[0..<candidate], expanded[0..<candidate])
            if divergence < best.divergence {
                best = (divergence, candidate)
            }
        }
        return Double(best.bins) * width
    }

    /// KL(P || Q) of two unnormalized histograms; a bin where P has mass and Q none counts as a
    /// large finite penalty (TensorRT smooths Q the same way) so that candidates stay comparable.
    static func klDivergence(_ p: ArraySlice<Double>, _ q: ArraySlice<Double>) -> Double {
        let pTotal = p.reduce(0, +), qTotal = q.reduce(0, +)
        guard pTotal > 0, qTotal > 0 else { return .infinity }
        var divergence = 0.0
        let floor = 1e-10
        for (pValue, qValue) in zip(p, q) where pValue > 0 {
            let pNormal = pValue / pTotal
            let qNormal = max(qValue / qTotal, floor)
            divergence += pNormal * log(pNormal / qNormal)
        }
        return divergence
    }
}
