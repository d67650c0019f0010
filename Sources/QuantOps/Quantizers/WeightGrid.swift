/// A quantized weight layer's grid as quantization-aware training rounds onto it: the grid stays
/// fixed while the float master weights beneath it move, so that "this weight's integer value
/// changed" is well defined from one step to the next.
///
/// Codes are `q = clamp(round(w / S + Z), qmin, qmax)` (halves to even) and values `S * (q - Z)`,
/// one (S, Z) per output channel or per tensor. Ternary and binary layers are grids too:
/// ternary is `alpha * {-1, 0, +1}` (S = alpha, Z = 0), binary `alpha * {-1, +1}`
/// (S = 2 alpha, Z = 1/2, codes 0 and 1, the threshold at w = 0).
public struct WeightGrid: Sendable, Equatable {
    public let scales: [Float]
    public let zeroPoints: [Float]
    public let levels: ClosedRange<Int>
    /// Weights per scale: the whole tensor, or one output channel.
    public let groupSize: Int

    /// The grid of a layer with `count` weights and `outputChannels` output channels; nil for a
    /// float layer.
    public init?(precision: WeightPrecision, count: Int, outputChannels: Int) {
        let grid: QuantizationGrid
        switch precision {
        case .float32:
            return nil
        case .ternary(let alpha):
            grid = QuantizationGrid(scales: [alpha], zeroPoints: [0], levels: -1...1, granularity: .tensor)
        case .binary(let alpha):
            grid = QuantizationGrid(scales: [2 * alpha], zeroPoints: [0.5], levels: 0...1, granularity: .tensor)
        case .uniform(_, _, let uniform):
            grid = uniform
        }
        let groups = grid.granularity == .channel ? max(outputChannels, 1) : 1
        guard count > 0, count % groups == 0, grid.scales.count == groups, grid.zeroPoints.count == groups else { return nil }
        scales = grid.scales
        zeroPoints = grid.zeroPoints
        levels = grid.levels
        groupSize = count / groups
    }

    /// The integer code of `value` in group `group`; a group of scale 0 holds only code Z.
    @inline(__always)
    public func code(_ value: Float, group: Int) -> Int {
        let scale = scales[group]
        guard scale > 0 else { return Int(zeroPoints[group].rounded(.toNearestOrEven)) }
        let q = (value / scale + zeroPoints[group]).rounded(.toNearestOrEven)
        return Int(min(max(q, Float(levels.lowerBound)), Float(levels.upperBound)))
    }

    /// The fake-quantized weights: every master weight moved to its grid value.
    public func project(_ master: [Float]) -> [Float] {
        var values = [Float](repeating: 0, count: master.count)
        for index in master.indices {
            let group = index / groupSize
            values[index] = scales[group] * (Float(code(master[index], group: group)) - zeroPoints[group])
        }
        return values
    }

    public func codes(_ master: [Float]) -> [Int32] {
        master.indices.map { Int32(code(master[$0], group: $0 / groupSize)) }
    }

    /// The straight-through estimator: the gradient with respect to the fake-quantized weight,
    /// passed to the master weight where rounding, not clamping, produced the value (where
    /// `round(w / S + Z)` lies inside the levels), and zero where the weight is clipped, as
    /// PyTorch's fake quantizers do.
    public func straightThrough(master: [Float], gradient: [Float]) -> [Float] {
        var passed = gradient
        let low = Float(levels.lowerBound), high = Float(levels.upperBound)
        for index in master.indices {
            let group = index / groupSize
            let scale = scales[group]
            guard scale > 0 else {
                passed[index] = 0
                continue
            }
            let q = (master[index] / scale + zeroPoints[group]).rounded(.toNearestOrEven)
            if q < low || q > high { passed[index] = 0 }
        }
        return passed
    }

    /// How many weights have different codes in `before` and `after`.
    public static func changedCodes(_ before: [Int32], _ after: [Int32]) -> Int {
        var changed = 0
        for index in before.indices where before[index] != after[index] { changed += 1 }
        return changed
    }
}
