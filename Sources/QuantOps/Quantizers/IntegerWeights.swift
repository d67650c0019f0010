/// A quantized layer's weights as a runtime stores them: integer codes `c` with one scale `S`
/// and zero point `Z` per output channel (or per tensor), `w = S * (c - Z)`.
///
/// Every weight precision qsh produces maps onto this form exactly:
/// - ternary `alpha * {-1, 0, +1}` and binary `alpha * {-1, +1}`: codes -1, 0, +1 with `S = alpha`;
/// - symmetric uniform: the grid's own codes and scales;
/// - asymmetric uniform: the grid's codes and zero points, shifted by -128 when they exceed int8;
/// - DoReFa, whose zero point `n/2` is a half integer: odd codes `2q - n` with `S/2`, zero point 0.
///
/// Codes that fit int8 are stored as int8; wider ones (more than 8 bits, or 8-bit DoReFa with
/// codes up to +-255) as int32 with zero point 0, which ONNX's DequantizeLinear also accepts.
public struct IntegerWeights: Sendable, Equatable {
    public enum Storage: String, Sendable {
        case int8
        case int32
    }

    /// One code per weight, in the weight tensor's order.
    public var codes: [Int32]
    /// One scale per output channel, or a single scale.
    public var scales: [Float]
    public var zeroPoints: [Int32]
    public var storage: Storage
    /// Largest `|S * (c - Z) - w|` over the weights: float rounding only.
    public var largestDeviation: Float

    public var isPerChannel: Bool { scales.count > 1 }

    /// The runtime scales of a layer with `precision` and `outputChannels` channels, one per channel
    /// (repeated for a per-tensor grid); nil for float weights. A channel whose scale is 0 holds only
    /// zeros and is given scale 1, so that runtimes that reject a zero scale accept it.
    public static func channelScales(_ precision: WeightPrecision, outputChannels: Int) -> [Float]? {
        guard let representation = representation(precision) else { return nil }
        let scales = representation.scales.map { $0 > 0 ? $0 : 1 }
        if scales.count == outputChannels { return scales }
        return [Float](repeating: scales.first ?? 1, count: outputChannels)
    }

    /// Scales and zero points in runtime form (before any int8 shift), without the codes.
    static func representation(_ precision: WeightPrecision) -> (scales: [Float], zeroPoints: [Int32])? {
        switch precision {
        case .float32:
            return nil
        case .ternary(let alpha), .binary(let alpha):
            return ([alpha], [0])
        case .uniform(_, _, let grid):
            var scales: [Float] = []
            var zeroPoints: [Int32] = []
            for (scale, zeroPoint) in zip(grid.scales, grid.zeroPoints) {
                if zeroPoint == zeroPoint.rounded() {
                    scales.append(scale)
                    zeroPoints.append(Int32(zeroPoint))
                } else {
                    // w = S (q - Z) with Z = k + 1/2: w = (S/2) (2q - 2Z), an odd integer times S/2.
                    scales.append(scale / 2)
                    zeroPoints.append(0)
                }
            }
            return (scales, zeroPoints)
        }
    }

    /// The codes of `weight` (output channels on axis 0) under `precision`; nil for float weights.
    /// Throws when the weights are not on the grid their precision records (for example after a
    /// compensation that rescaled them), naming `place`.
    public init?(weight: Tensor, precision: WeightPrecision, place: String) throws {
        guard let (rawScales, rawZeroPoints) = Self.representation(precision) else { return nil }
        let channels = max(1, weight.shape.first ?? 1)
        let groups = rawScales.count
        guard groups == 1 || groups == channels, weight.count % groups == 0 else {
            throw QuantizationError(place: place, problem: "has \(groups) weight scales for \(channels) output channels",
                                    remedy: "quantize the layer again")
        }
        let groupSize = weight.count / groups
        var scales = rawScales
        var zeroPoints = rawZeroPoints
        var codes = [Int32](repeating: 0, count: weight.count)
        var deviation: Float = 0
        for group in 0..<groups {
            if scales[group] <= 0 {
                // A channel of zeros: code Z, value 0 under any scale.
                scales[group] = 1
            }
            let scale = scales[group]
            let zeroPoint = Float(zeroPoints[group])
            var groupDeviation: Float = 0
            for index in group * groupSize ..< (group + 1) * groupSize {
                let value = weight.data[index]
                let code = (value / scale + zeroPoint).rounded(.toNearestOrEven)
                guard abs(code) < 2_147_483_520 else {
                    throw QuantizationError(place: place, problem: "weight \(value) is far off its \(precision.label) grid (scale \(scale))",
                                            remedy: "quantize the layer again")
                }
                codes[index] = Int32(code)
                groupDeviation = max(groupDeviation, abs(scale * (code - zeroPoint) - value))
            }
            deviation = max(deviation, groupDeviation)
            // A fraction of one step: more than float rounding means the weights left their grid.
            if groupDeviation > scale * 1e-3 {
                throw QuantizationError(
                    place: place,
                    problem: "the weights are not on their recorded \(precision.label) grid (largest distance \(groupDeviation), step \(scale))",
                    remedy: "quantize the layer again, or keep it float")
            }
        }
        let low = min(codes.min() ?? 0, zeroPoints.min() ?? 0)
        let high = max(codes.max() ?? 0, zeroPoints.max() ?? 0)
        var storage = Storage.int8
        if low >= -128 && high <= 127 {
            storage = .int8
        } else if low >= 0 && high <= 255 {
            // uint8-style codes: the same grid shifted into int8.
            for index in codes.indices { codes[index] -= 128 }
            for index in zeroPoints.indices { zeroPoints[index] -= 128 }
        } else {
            // ONNX requires zero point 0 for int32 codes: fold it into the codes.
            storage = .int32
            for index in codes.indices { codes[index] -= zeroPoints[index / groupSize] }
            zeroPoints = zeroPoints.map { _ in 0 }
        }
        self.codes = codes
        self.scales = scales
        self.zeroPoints = zeroPoints
        self.storage = storage
        largestDeviation = deviation
    }

    /// The dequantized weights `S * (c - Z)`, as a runtime computes them.
    public func values() -> [Float] {
        let groupSize = codes.count / max(1, scales.count)
        return codes.indices.map { index in
            let group = index / groupSize
            return scales[group] * Float(codes[index] - zeroPoints[group])
        }
    }
}

/// Bias quantization as integer runtimes do it: a layer with integer weights and a quantized
/// input accumulates in int32, so its bias is stored in int32 with scale `S_w[j] * S_in` (the
/// weight scale of output channel j times the input's activation scale), zero point 0.
///
/// The simulation rounds the bias the same way (`ForwardPass` and `CompiledModel` run
/// `simulated(_:)`), so that fake-quantized accuracy is what an exported QDQ model gives.
public enum BiasQuantization {
    /// The int32 codes and per-channel scales of a bias; values are `scales[j] * codes[j]`.
    public struct Quantized: Sendable, Equatable {
        public var codes: [Int32]
        public var scales: [Float]

        public var values: [Float] { zip(codes, scales).map { Float($0) * $1 } }
    }

    /// `round(b_j / (S_w[j] * S_in))`, halves to even, clamped to int32.
    public static func quantize(_ bias: [Float], weightScales: [Float], inputScale: Float) -> Quantized {
        var codes = [Int32](repeating: 0, count: bias.count)
        var scales = [Float](repeating: 0, count: bias.count)
        for j in bias.indices {
            let scale = weightScales[weightScales.count == bias.count ? j : 0] * inputScale
            scales[j] = scale
            guard scale > 0, scale.isFinite else { continue }
            let code = (bias[j] / scale).rounded(.toNearestOrEven)
            codes[j] = Int32(min(max(code, -2_147_483_520), 2_147_483_520))
        }
        return Quantized(codes: codes, scales: scales)
    }

    /// The activation scale of the tensor node `index` reads: the calibrated quantizer it comes
    /// from, looking through the option-A shortcut and flatten, which only move quantized values.
    /// Nil when the input is float or its quantizer is not calibrated, or its scale is 0.
    public static func inputScale(of index: Int, in model: Model) -> Float? {
        guard let first = model.nodes[index].inputs.first else { return nil }
        var source = first
        var steps = 0
        while source >= 0, source < model.nodes.count, steps < model.nodes.count {
            switch model.nodes[source].operation {
            case .fakeQuantize(let quantizer):
                guard let scale = quantizer.grid()?.scales.first, scale > 0 else { return nil }
                return scale
            case .flatten, .shortcutA:
                guard let next = model.nodes[source].inputs.first else { return nil }
                source = next
                steps += 1
            default:
                return nil
            }
        }
        return nil
    }

    /// The int32 form of the bias of weight node `index`, when it has one: integer weights, a
    /// bias, and a quantized input.
    public static func quantizedBias(of index: Int, in model: Model) -> Quantized? {
        guard let layer = model.nodes[index].operation.weightLayer, let bias = layer.bias,
              layer.precision.isQuantized, bias.count == layer.outputChannels,
              let weightScales = IntegerWeights.channelScales(layer.precision, outputChannels: layer.outputChannels),
              let inputScale = inputScale(of: index, in: model) else { return nil }
        return quantize(bias.data, weightScales: weightScales, inputScale: inputScale)
    }

    /// The model with every int32-quantizable bias replaced by its rounded value.
    public static func simulated(_ model: Model) -> Model {
        guard model.nodes.contains(where: { $0.operation.isFakeQuantize }) else { return model }
        var result = model
        for index in model.nodes.indices {
            guard let quantized = quantizedBias(of: index, in: model) else { continue }
            result.nodes[index].operation.weightLayer?.bias = Tensor(shape: [quantized.codes.count], data: quantized.values)
        }
        return result
    }
}
