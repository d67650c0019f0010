extension WeightPrecision {
    /// The record of the same integer codes after output channel `j` of the weight is multiplied by
    /// `factors[j]`: every scale becomes per channel. Ternary and binary, whose record has a single
    /// alpha, become the equivalent per-channel symmetric grid with levels -1...1 (binary never
    /// uses the code 0).
    public func scaledPerOutputChannel(by factors: [Float]) -> WeightPrecision {
        switch self {
        case .float32:
            return .float32
        case .ternary(let alpha):
            return .uniform(bits: 2, scheme: .symmetric, grid: Self.channelGrid(alpha, factors))
        case .binary(let alpha):
            return .uniform(bits: 1, scheme: .symmetric, grid: Self.channelGrid(alpha, factors))
        case .uniform(let bits, let scheme, let grid):
            let perChannel = grid.granularity == .channel
            let scales = factors.indices.map { factors[$0] * grid.scales[perChannel ? $0 : 0] }
            let zeroPoints = factors.indices.map { grid.zeroPoints[perChannel ? $0 : 0] }
            return .uniform(bits: bits, scheme: scheme,
                            grid: QuantizationGrid(scales: scales, zeroPoints: zeroPoints, levels: grid.levels,
                                                   granularity: .channel))
        }
    }

    private static func channelGrid(_ alpha: Float, _ factors: [Float]) -> QuantizationGrid {
        QuantizationGrid(scales: factors.map { $0 * alpha }, zeroPoints: factors.map { _ in 0 }, levels: -1...1,
                         granularity: .channel)
    }
}
