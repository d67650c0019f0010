/// How a uniform weight grid chooses its range.
public enum WeightClipping: String, Sendable, CaseIterable {
    /// The whole range, [min(W, 0), max(W, 0)] (symmetric: max|W|).
    case minMax = "minmax"
    /// The range shrunk by the factor in `WeightQuantizer.clippingFactors` that gives the least
    /// squared error between each group's weights and their quantized values: at 4 bits and
    /// below, resolution for the many small weights is worth more than the few largest.
    case mse
}

/// The weight quantizers of methods.md §2. `quantize` returns fake-quantized floats (values that
/// lie on the quantizer's grid) together with the precision record that lets an integer export
/// recover the codes.
public enum WeightQuantizer: Sendable, Equatable {
    /// TWN: layer-wise threshold 0.7 * mean|W| and scale alpha; values alpha * {-1, 0, +1}.
    case ternary
    /// sign(W) * mean|W|; values alpha * {-1, +1}.
    case binary
    /// DoReFa k-bit, layer-wise, symmetric, 2^k levels without an exact zero.
    case dorefa(bits: Int)
    /// Uniform affine quantization, range [min(W, 0), max(W, 0)] per tensor or per output channel.
    /// With `scheme: .dorefa` the DoReFa formula is applied per tensor or per channel.
    case uniform(bits: Int, scheme: QuantizationScheme, granularity: Granularity, clipping: WeightClipping = .minMax)

    /// The name used in reports and recipes.
    public var label: String {
        switch self {
        case .ternary: return "ternary"
        case .binary: return "binary"
        case .dorefa(let bits): return "\(bits)-bit dorefa"
        case .uniform(let bits, let scheme, let granularity, let clipping):
            return "\(bits)-bit \(scheme.rawValue)" + (granularity == .channel ? " per channel" : " per tensor")
                + (clipping == .mse ? ", MSE-clipped" : "")
        }
    }

    /// The bit widths each scheme can represent; symmetric needs at least 2 bits for a nonzero level.
    public static func validBits(for scheme: QuantizationScheme) -> ClosedRange<Int> {
        scheme == .symmetric ? 2...16 : 1...16
    }

    /// Fake-quantizes `weight` (output channels on axis 0). A tensor or channel of zeros keeps its
    /// zeros with scale 0 rather than dividing by zero.
    public func quantize(_ weight: Tensor) throws -> (Tensor, WeightPrecision) {
        try Self.checkQuantizable(weight)
        switch self {
        case .ternary:
            let (values, alpha) = Self.ternarize(weight.data)
            return (Tensor(shape: weight.shape, data: values), .ternary(alpha: alpha))
        case .binary:
            let (values, alpha) = Self.binarize(weight.data)
            return (Tensor(shape: weight.shape, data: values), .binary(alpha: alpha))
        case .dorefa(let bits):
            return try WeightQuantizer.uniform(bits: bits, scheme: .dorefa, granularity: .tensor).quantize(weight)
        case .uniform(let bits, let scheme, let granularity, let clipping):
            guard Self.validBits(for: scheme).contains(bits) else {
                throw QuantizationError(
                    problem: "\(bits)-bit \(scheme.rawValue) quantization is not supported",
                    remedy: "choose bits in \(Self.validBits(for: scheme).lowerBound)...\(Self.validBits(for: scheme).upperBound)")
            }
            let groups = granularity == .channel ? weight.shape[0] : 1
            let groupSize = weight.count / groups
            var values = [Float](repeating: 0, count: weight.count)
            var scales: [Float] = []
            var zeroPoints: [Float] = []
            var levels = 0...0
            for group in 0..<groups {
                let range = group * groupSize ..< (group + 1) * groupSize
                let slice = weight.data[range]
                let grid: (scale: Float, zeroPoint: Float, levels: ClosedRange<Int>)
                let shrink = clipping == .mse && scheme != .dorefa ? Self.leastSquaredErrorFactor(slice, bits: bits, scheme: scheme) : 1
                switch scheme {
                case .dorefa: grid = Self.dorefa(slice, bits: bits, into: &values, at: range.lowerBound)
                case .symmetric: grid = Self.symmetric(slice, bits: bits, into: &values, at: range.lowerBound, shrink: shrink)
                case .asymmetric: grid = Self.asymmetric(slice, bits: bits, into: &values, at: range.lowerBound, shrink: shrink)
                }
                scales.append(grid.scale)
                zeroPoints.append(grid.zeroPoint)
                levels = grid.levels
            }
            let record = QuantizationGrid(scales: scales, zeroPoints: zeroPoints, levels: levels, granularity: granularity)
            return (Tensor(shape: weight.shape, data: values), .uniform(bits: bits, scheme: scheme, grid: record))
        }
    }

    static func checkQuantizable(_ weight: Tensor) throws {
        guard weight.count > 0, weight.rank >= 1, weight.shape[0] > 0 else {
            throw QuantizationError(problem: "cannot quantize an empty weight tensor of shape \(weight.shape)")
        }
        var nonFinite = 0
        var firstIndex = -1
        for (index, value) in weight.data.enumerated() where !value.isFinite {
            if firstIndex < 0 { firstIndex = index }
            nonFinite += 1
        }
        if nonFinite > 0 {
            throw QuantizationError(
                problem: "the weights hold \(nonFinite) NaN or infinite value(s), the first at flat index \(firstIndex)",
                remedy: "the checkpoint is damaged or an earlier step diverged; reload the model")
        }
    }

    // MARK: - The formulas of methods.md §2

    /// Rounding as torch.round does it (halves to even), so results match a PyTorch reference.
    @inline(__always)
    static func roundHalfEven(_ x: Float) -> Float { x.rounded(.toNearestOrEven) }

    static func ternarize(_ w: [Float]) -> (values: [Float], alpha: Float) {
        var absoluteSum = 0.0
        for x in w { absoluteSum += Double(abs(x)) }
        let delta = Float(0.7 * absoluteSum / Double(w.count))
        var keptSum = 0.0
        var kept = 0
        for x in w where abs(x) > delta {
            keptSum += Double(abs(x))
            kept += 1
        }
        // Only an all-zero tensor keeps nothing above the threshold; its scale is 0.
        let alpha = kept > 0 ? Float(keptSum / Double(kept)) : 0
        var values = [Float](repeating: 0, count: w.count)
        if alpha > 0 {
            for (index, x) in w.enumerated() where abs(x) > delta {
                values[index] = x > 0 ? alpha : -alpha
            }
        }
        return (values, alpha)
    }

    static func binarize(_ w: [Float]) -> (values: [Float], alpha: Float) {
        var absoluteSum = 0.0
        for x in w { absoluteSum += Double(abs(x)) }
        let alpha = Float(absoluteSum / Double(w.count))
        // sign(0) is taken as +1 so that the result keeps exactly two levels.
        return (w.map { $0 < 0 ? -alpha : alpha }, alpha)
    }

    /// Q(W) = m * ((2/n) * round(n * (W/(2m) + 1/2)) - 1), n = 2^k - 1, m = max|W|.
    /// As a grid: value = (2m/n) * (q - n/2) for q in 0...n.
    static func dorefa(_ w: ArraySlice<Float>, bits: Int, into values: inout [Float], at start: Int)
        -> (scale: Float, zeroPoint: Float, levels: ClosedRange<Int>)
    {
        let n = Float((1 << bits) - 1)
        var m: Float = 0
        for x in w { m = max(m, abs(x)) }
        let levels = 0...((1 << bits) - 1)
        guard m > 0 else { return (0, n / 2, levels) }
        let stepCount = 2 / n
        for (offset, x) in w.enumerated() {
            let q = roundHalfEven(n * (x / (2 * m) + 0.5))
            values[start + offset] = m * (stepCount * q - 1)
        }
        return (2 * m / n, n / 2, levels)
    }

    /// S = max(|r_min|, |r_max|) / (2^(b-1) - 1), q = clamp(round(r/S), -(2^(b-1)-1), 2^(b-1)-1), r' = S*q.
    /// The range factors `clip=mse` tries: 1 down to 0.2 in steps of 0.01.
    public static let clippingFactors: [Float] = (0 ... 80).map { 1 - Float($0) / 100 }

    /// The factor of `clippingFactors` whose shrunk range quantizes `w` with the least squared
    /// error (the largest such factor on ties, so that a tie keeps more of the range).
    static func leastSquaredErrorFactor(_ w: ArraySlice<Float>, bits: Int, scheme: QuantizationScheme) -> Float {
        var scratch = [Float](repeating: 0, count: w.count)
        var best: (factor: Float, error: Double) = (1, .infinity)
        let local = Array(w)[...]
        for factor in clippingFactors {
            switch scheme {
            case .asymmetric: _ = asymmetric(local, bits: bits, into: &scratch, at: 0, shrink: factor)
            default: _ = symmetric(local, bits: bits, into: &scratch, at: 0, shrink: factor)
            }
            var error = 0.0
            for (x, q) in zip(local, scratch) { error += Double(x - q) * Double(x - q) }
            if error < best.error { best = (factor, error) }
        }
        return best.factor
    }

    static func symmetric(_ w: ArraySlice<Float>, bits: Int, into values: inout [Float], at start: Int, shrink: Float = 1)
        -> (scale: Float, zeroPoint: Float, levels: ClosedRange<Int>)
    {
        let qMax = (1 << (bits - 1)) - 1
        var magnitude: Float = 0
        for x in w { magnitude = max(magnitude, abs(x)) }
        magnitude *= shrink
        let levels = -qMax...qMax
        guard magnitude > 0 else { return (0, 0, levels) }
        let scale = magnitude / Float(qMax)
        let upper = Float(qMax)
        for (offset, x) in w.enumerated() {
            let q = min(max(roundHalfEven(x / scale), -upper), upper)
            values[start + offset] = scale * q
        }
        return (scale, 0, levels)
    }

    /// Range [min(W, 0), max(W, 0)] so that zero is exactly representable (the practical paper's
    /// requirement); S = (r_max - r_min)/(2^b - 1), Z = round(-r_min/S),
    /// q = clamp(round(r/S) + Z, 0, 2^b - 1), r' = S * (q - Z).
    static func asymmetric(_ w: ArraySlice<Float>, bits: Int, into values: inout [Float], at start: Int, shrink: Float = 1)
        -> (scale: Float, zeroPoint: Float, levels: ClosedRange<Int>)
    {
        let qMax = (1 << bits) - 1
        var low: Float = 0
        var high: Float = 0
        for x in w {
            low = min(low, x)
            high = max(high, x)
        }
        low *= shrink
        high *= shrink
        let levels = 0...qMax
        guard high > low else { return (0, 0, levels) }
        let scale = (high - low) / Float(qMax)
        let zeroPoint = roundHalfEven(-low / scale)
        let upper = Float(qMax)
        for (offset, x) in w.enumerated() {
            let q = min(max(roundHalfEven(x / scale) + zeroPoint, 0), upper)
            values[start + offset] = scale * (q - zeroPoint)
        }
        return (scale, zeroPoint, levels)
    }
}
