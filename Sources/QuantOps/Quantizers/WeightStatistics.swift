/// Summary of a weight tensor for `stats layer N` and `diff`.
public struct WeightStatistics: Sendable, Equatable {
    public var count: Int
    public var min: Float
    public var max: Float
    public var mean: Double
    /// Population standard deviation.
    public var std: Double
    public var absoluteMean: Double
    public var zeroFraction: Double
    /// Number of distinct values: 3 for a ternary layer, at most 2^k for k-bit.
    public var distinctLevels: Int
    public var nonFiniteCount: Int

    private let values: [Float]

    public init(_ tensor: Tensor) {
        values = tensor.data
        count = tensor.count
        var low = Float.infinity
        var high = -Float.infinity
        var sum = 0.0
        var absoluteSum = 0.0
        var zeros = 0
        var nonFinite = 0
        for x in tensor.data {
            guard x.isFinite else {
                nonFinite += 1
                continue
            }
            low = Swift.min(low, x)
            high = Swift.max(high, x)
            sum += Double(x)
            absoluteSum += Double(abs(x))
            if x == 0 { zeros += 1 }
        }
        let finite = count - nonFinite
        mean = finite > 0 ? sum / Double(finite) : 0
        var squares = 0.0
        for x in tensor.data where x.isFinite {
            let d = Double(x) - mean
            squares += d * d
        }
        std = finite > 0 ? (squares / Double(finite)).squareRoot() : 0
        absoluteMean = finite > 0 ? absoluteSum / Double(finite) : 0
        zeroFraction = count > 0 ? Double(zeros) / Double(count) : 0
        min = finite > 0 ? low : 0
        max = finite > 0 ? high : 0
        distinctLevels = Set(tensor.data.filter(\.isFinite)).count
        nonFiniteCount = nonFinite
    }

    public struct Bin: Sendable, Equatable {
        public var lower: Float
        public var upper: Float
        public var count: Int
    }

    /// Equal-width bins over [min, max]; the last bin includes max. Non-finite values are left out.
    public func histogram(bins: Int) -> [Bin] {
        let binCount = Swift.max(bins, 1)
        let width = (max - min) / Float(binCount)
        var counts = [Int](repeating: 0, count: binCount)
        for x in values where x.isFinite {
            let index = width > 0 ? Int((x - min) / width) : 0
            counts[Swift.min(Swift.max(index, 0), binCount - 1)] += 1
        }
        return counts.indices.map { index in
            Bin(lower: min + Float(index) * width,
                upper: index == binCount - 1 ? max : min + Float(index + 1) * width,
                count: counts[index])
        }
    }

    /// ||a - b|| / ||b|| over all elements, accumulated in Double. 0 when both are zero, infinity
    /// when only `b` is; NaN when the element counts differ (the tensors are not comparable).
    public static func relativeError(_ a: Tensor, _ b: Tensor) -> Double {
        guard a.count == b.count else { return .nan }
        var difference = 0.0
        var reference = 0.0
        for index in 0..<a.count {
            let d = Double(a.data[index]) - Double(b.data[index])
            difference += d * d
            reference += Double(b.data[index]) * Double(b.data[index])
        }
        if reference == 0 { return difference == 0 ? 0 : .infinity }
        return (difference / reference).squareRoot()
    }
}
