/// A histogram of |x| with a fixed number of equal bins over [0, 2^exponent).
///
/// The bin width is a power of two, so a value's bin index is exact, and growing the range
/// (doubling it by merging neighbouring bins) files every value exactly where a histogram
/// built with the final range from the start would. The final histogram therefore depends only
/// on the values, not on how they were split into batches or in which order they came.
public struct MagnitudeHistogram: Sendable, Equatable, Codable {
    /// Fine enough that the 2048-bin histogram the entropy method uses over [0, max|x|] is
    /// resampled from at least 4 fine bins per bin.
    public static let defaultBinCount = 16384

    public private(set) var counts: [Int64]
    /// The histogram covers [0, 2^exponent).
    public private(set) var exponent: Int
    /// Values with |x| > 0; exact zeros are counted apart in `zeros`.
    public private(set) var total: Int64 = 0
    /// Exact zeros (ReLU outputs, padding). Every grid represents zero exactly, so they carry no
    /// quantization error; kept out of the bins, where their spike would dominate the entropy method.
    public private(set) var zeros: Int64 = 0

    public init(binCount: Int = defaultBinCount, exponent: Int = -24) {
        counts = [Int64](repeating: 0, count: max(2, binCount & ~1))
        self.exponent = exponent
    }

    public var upperBound: Double { Double(sign: .plus, exponent: exponent, significand: 1) }
    public var binWidth: Double { upperBound / Double(counts.count) }

    /// Doubles the range until it holds `magnitude` (strictly below the upper bound).
    mutating func grow(toHold magnitude: Float) {
        guard magnitude.isFinite else { return }
        while Double(magnitude) >= upperBound {
            let half = counts.count / 2
            for bin in 0..<half { counts[bin] = counts[2 * bin] + counts[2 * bin + 1] }
            for bin in half..<counts.count { counts[bin] = 0 }
            exponent += 1
        }
    }

    /// Adds |x| for each value; the caller has grown the range to hold the largest magnitude.
    mutating func add(_ values: UnsafeBufferPointer<Float>) {
        // Scaling by a power of two is exact, so the truncation gives the exact bin.
        let perUnit = Float(Double(counts.count) / upperBound)
        let last = counts.count - 1
        let lastStart = Float(last)
        var zeroCount = 0
        counts.withUnsafeMutableBufferPointer { bins in
            for value in values {
                let scaled = abs(value) * perUnit
                // NaN and infinity fail the comparison and land in the last bin instead of trapping.
                bins[scaled < lastStart ? Int(scaled) : last] += 1
            }
        }
        for value in values { zeroCount += value == 0 ? 1 : 0 }
        counts[0] -= Int64(zeroCount)
        zeros += Int64(zeroCount)
        total += Int64(values.count - zeroCount)
    }

    /// The smallest t with at least `fraction` of the values (zeros included) at |x| <= t,
    /// interpolating within a bin.
    public func quantile(_ fraction: Double) -> Double {
        guard total > 0 else { return 0 }
        let target = fraction * Double(total + zeros)
        var cumulative = Double(zeros)
        guard target > cumulative else { return 0 }
        for (bin, count) in counts.enumerated() where count > 0 {
            let next = cumulative + Double(count)
            if next >= target {
                let inside = (target - cumulative) / Double(count)
                return (Double(bin) + max(0, min(1, inside))) * binWidth
            }
            cumulative = next
        }
        return upperBound
    }

    /// The nonzero values in `bins` equal bins over [0, upper], each fine bin's count spread over the coarse bins in
    /// proportion to the overlap (the fine bins are at least 4 times narrower where it matters).
    public func resampled(bins: Int, upper: Double) -> [Double] {
        var result = [Double](repeating: 0, count: bins)
        guard upper > 0, bins > 0 else { return result }
        let width = binWidth
        let coarse = upper / Double(bins)
        for (bin, count) in counts.enumerated() where count > 0 {
            let low = Double(bin) * width
            let high = low + width
            guard low < upper else {
                result[bins - 1] += Double(count)
                continue
            }
            var start = low
            while start < high {
                let target = min(bins - 1, Int(start / coarse))
                let end = target == bins - 1 ? high : min(high, Double(target + 1) * coarse)
                result[target] += Double(count) * (end - start) / width
                if end <= start { break }
                start = end
            }
        }
        return result
    }
}

/// Everything the range estimators need about one activation tensor, gathered in one pass.
///
/// Per-image minima and maxima are kept so that a moving average over batches of any size can
/// be replayed without running the model again; sums are formed per image in Double and added in
/// image order, so the batch size does not change them.
public struct TensorStatistics: Sendable, Equatable, Codable {
    public var minimum: Float = .infinity
    public var maximum: Float = -.infinity
    public var sum: Double = 0
    public var sumOfSquares: Double = 0
    public var count: Int = 0
    public var imageMinima: [Float] = []
    public var imageMaxima: [Float] = []
    public var histogram = MagnitudeHistogram()

    public init() {}

    public var mean: Double { count > 0 ? sum / Double(count) : 0 }
    public var standardDeviation: Double {
        guard count > 0 else { return 0 }
        return max(0, sumOfSquares / Double(count) - mean * mean).squareRoot()
    }
    public var maxMagnitude: Float { max(abs(minimum), abs(maximum)) }

    /// Adds a batch (images along axis 0).
    public mutating func observe(_ tensor: Tensor) {
        let images = max(1, tensor.shape.first ?? 1)
        let perImage = tensor.count / images
        guard perImage > 0 else { return }
        tensor.data.withUnsafeBufferPointer { all in
            for image in 0..<images {
                let values = UnsafeBufferPointer(rebasing: all[(image * perImage)..<((image + 1) * perImage)])
                var low = Float.infinity, high = -Float.infinity
                var imageSum = 0.0, imageSquares = 0.0
                // Float partial sums over short runs keep the loop vectorized; Double takes over
                // before rounding could matter.
                var start = 0
                while start < values.count {
                    let end = min(values.count, start + 256)
                    var partial: Float = 0, partialSquares: Float = 0
                    for index in start..<end {
                        let value = values[index]
                        low = min(low, value)
                        high = max(high, value)
                        partial += value
                        partialSquares += value * value
                    }
                    imageSum += Double(partial)
                    imageSquares += Double(partialSquares)
                    start = end
                }
                minimum = min(minimum, low)
                maximum = max(maximum, high)
                imageMinima.append(low)
                imageMaxima.append(high)
                sum += imageSum
                sumOfSquares += imageSquares
                count += values.count
                histogram.grow(toHold: max(abs(low), abs(high)))
                histogram.add(values)
            }
        }
    }
}
