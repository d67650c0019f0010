/// What a weight layer's values are, so that an integer export can recover them exactly.
public enum QuantizationScheme: String, Sendable, CaseIterable {
    case dorefa
    case symmetric
    case asymmetric
}

public enum Granularity: String, Sendable, CaseIterable {
    case tensor
    case channel
}

/// The grid a fake-quantized tensor lies on: value = scale * (q - zeroPoint) for integer q in
/// `levels`, with one scale and zero point per tensor or per output channel.
public struct QuantizationGrid: Sendable, Equatable {
    public var scales: [Float]
    public var zeroPoints: [Float]
    public var levels: ClosedRange<Int>
    public var granularity: Granularity

    public init(scales: [Float], zeroPoints: [Float], levels: ClosedRange<Int>, granularity: Granularity) {
        self.scales = scales
        self.zeroPoints = zeroPoints
        self.levels = levels
        self.granularity = granularity
    }
}

public enum WeightPrecision: Sendable, Equatable {
    case float32
    /// Values alpha * {-1, 0, +1}.
    case ternary(alpha: Float)
    /// Values alpha * {-1, +1}.
    case binary(alpha: Float)
    /// `bits`-bit values on `grid`.
    case uniform(bits: Int, scheme: QuantizationScheme, grid: QuantizationGrid)

    /// Bits per weight, as the papers count model size (float layers at 32).
    public var bits: Double {
        switch self {
        case .float32: return 32
        case .ternary: return 2
        case .binary: return 1
        case .uniform(let bits, _, _): return Double(bits)
        }
    }

    public var isQuantized: Bool { self != .float32 }

    public var label: String {
        switch self {
        case .float32: return "fp32"
        case .ternary: return "ternary"
        case .binary: return "binary"
        case .uniform(let bits, let scheme, let grid):
            let perChannel = grid.granularity == .channel ? "/ch" : ""
            // A compensated ternary or binary layer keeps its codes under per-channel scales.
            if scheme == .symmetric && grid.levels == -1...1 { return (bits == 1 ? "binary" : "ternary") + perChannel }
            return "\(bits)-bit \(scheme.rawValue)" + perChannel
        }
    }
}
