/// A fake quantizer on one activation tensor: the values an integer runtime would hold between
/// fused layers, returned as floats that lie exactly on the grid `scale * (q - zeroPoint)`.
///
/// The range comes from calibration; until then the quantizer refuses to run rather than
/// pass floats through silently.
public struct ActivationQuantizer: Sendable, Equatable {
    public var bits: Int
    /// `.asymmetric` (uint8-style, zero point) or `.symmetric` (int8-style, zero point 0).
    public var scheme: QuantizationScheme
    /// The calibrated clipping range; nil until `calibrate` sets it.
    public var range: ClosedRange<Float>?

    public init(bits: Int, scheme: QuantizationScheme, range: ClosedRange<Float>? = nil) {
        self.bits = bits
        self.scheme = scheme
        self.range = range
    }

    public static let validBits = 2...16
    public static let schemes: [QuantizationScheme] = [.asymmetric, .symmetric]

    /// Checks a requested configuration before any graph is changed.
    public static func validate(bits: Int, scheme: QuantizationScheme) throws {
        guard validBits.contains(bits) else {
            throw QuantizationError(place: "bits=\(bits)", problem: "activations can be quantized to \(validBits.lowerBound)...\(validBits.upperBound) bits",
                                    remedy: "use 8 for deployment, 16 for sensitive layers")
        }
        guard schemes.contains(scheme) else {
            throw QuantizationError(place: "scheme=\(scheme.rawValue)", problem: "activations use a uniform affine grid",
                                    remedy: "use scheme=asymmetric or scheme=symmetric")
        }
    }

    public var label: String {
        "\(bits)-bit \(scheme.rawValue)"
    }

    /// The grid for the calibrated range. The range is widened to contain 0, so that zero
    /// padding and ReLU zeros are exact; a degenerate range gets scale 0 (all values become 0).
    public func grid() -> QuantizationGrid? {
        guard let range else { return nil }
        let low = min(range.lowerBound, 0)
        let high = max(range.upperBound, 0)
        switch scheme {
        case .symmetric:
            let qMax = (1 << (bits - 1)) - 1
            let magnitude = max(-low, high)
            return QuantizationGrid(scales: [magnitude > 0 ? magnitude / Float(qMax) : 0], zeroPoints: [0],
                                    levels: -qMax...qMax, granularity: .tensor)
        default:
            let qMax = (1 << bits) - 1
            guard high > low else {
                return QuantizationGrid(scales: [0], zeroPoints: [0], levels: 0...qMax, granularity: .tensor)
            }
            let scale = (high - low) / Float(qMax)
            let zeroPoint = (-low / scale).rounded(.toNearestOrEven)
            return QuantizationGrid(scales: [scale], zeroPoints: [min(max(zeroPoint, 0), Float(qMax))],
                                    levels: 0...qMax, granularity: .tensor)
        }
    }

    /// The quantizer whose grid has step size `scale` and the same levels and zero point, as
    /// fine-tuning with learned ranges moves it; nil before calibration.
    public func withStepSize(_ scale: Float) -> ActivationQuantizer? {
        guard let grid = grid() else { return nil }
        let zeroPoint = grid.zeroPoints[0]
        var moved = self
        moved.range = scale * (Float(grid.levels.lowerBound) - zeroPoint) ... scale * (Float(grid.levels.upperBound) - zeroPoint)
        return moved
    }

    /// Adding and subtracting 1.5 * 2^23 rounds a float of magnitude below 2^22 to the nearest
    /// integer, halves to even, in the default rounding mode; unlike `rounded(.toNearestOrEven)`
    /// it vectorizes without SSE4.1.
    @inline(__always)
    static func roundHalfEven(_ value: Float) -> Float {
        let magic: Float = 12_582_912
        return (value + magic) - magic
    }

    /// `x' = S * (clamp(round(x / S) + Z, qmin, qmax) - Z)`, rounding halves to even.
    public func apply(_ input: Tensor, at place: String) throws -> Tensor {
        guard let grid = grid() else {
            throw EngineError.uncalibrated(self, node: place)
        }
        let scale = grid.scales[0]
        var output = input
        guard scale > 0 else {
            for index in output.data.indices { output.data[index] = 0 }
            return output
        }
        let zeroPoint = grid.zeroPoints[0]
        // Clamping before rounding gives the same result (the bounds are integers) and keeps the
        // value small enough for the rounding trick below.
        let lower = Float(grid.levels.lowerBound) - zeroPoint
        let upper = Float(grid.levels.upperBound) - zeroPoint
        output.data.withUnsafeMutableBufferPointer { values in
            for index in values.indices {
                // Division rather than a reciprocal multiply, so that half-way values round as
                // the formula (and the weight quantizers) do.
                let clamped = min(max(values[index] / scale, lower), upper)
                values[index] = scale * Self.roundHalfEven(clamped)
            }
        }
        return output
    }
}
