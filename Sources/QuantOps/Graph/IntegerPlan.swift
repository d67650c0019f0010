/// Whether whole-model inference computes in float, or runs quantized layers on integers.
public enum Arithmetic: String, Sendable, CaseIterable {
    /// float32 throughout; activation quantizers round float values (the simulation).
    case float
    /// u8 activations and s8 weights with int32 accumulation where a layer allows it
    /// (`IntegerPlan`), float elsewhere.
    case int8
}

/// How a quantized activation is held between integer layers: u8 codes `q` standing for
/// `scale * (q - zeroPoint)`. A symmetric grid (-m...m) is shifted by 128, so that one unsigned
/// type holds every grid of at most 8 bits and convolutions need only the u8 x s8 kernels.
struct ByteGrid: Equatable {
    var scale: Float
    var zeroPoint: Int32
    /// The codes the quantizer's levels map to; clamping happens here, not at 0 and 255.
    var lower: Int32
    var upper: Int32

    /// Nil for quantizers wider than 8 bits, not yet calibrated, or with a degenerate range.
    init?(_ quantizer: ActivationQuantizer) {
        guard quantizer.bits <= 8, let grid = quantizer.grid(), let scale = grid.scales.first, scale > 0,
              let zeroPoint = grid.zeroPoints.first else { return nil }
        let shift: Int32 = grid.levels.lowerBound < 0 ? 128 : 0
        self.scale = scale
        self.zeroPoint = Int32(zeroPoint) + shift
        lower = Int32(grid.levels.lowerBound) + shift
        upper = Int32(grid.levels.upperBound) + shift
        guard lower >= 0, upper <= 255 else { return nil }
    }

    /// The code of `value`, rounded exactly as `ActivationQuantizer.apply` rounds it. NaN, which
    /// no code stands for, becomes the code of 0.
    @inline(__always)
    func code(_ value: Float) -> UInt8 {
        let steps = value / scale
        let clamped = steps.isNaN ? 0 : min(max(steps, Float(lower - zeroPoint)), Float(upper - zeroPoint))
        return UInt8(truncatingIfNeeded: Int32(ActivationQuantizer.roundHalfEven(clamped)) + zeroPoint)
    }

    /// The value of `code`, bit for bit what the simulation's quantizer outputs.
    @inline(__always)
    func value(_ code: UInt8) -> Float {
        scale * Float(Int32(code) - zeroPoint)
    }
}

/// Which convolutions of a quantized model run on integers, and with what parameters.
///
/// A convolution chain (conv, BN, residual add, ReLU, as `ExecutionPlan` fuses them) runs in
/// int8 when its input comes from an activation quantizer of at most 8 bits and its weights are
/// symmetric integer codes that fit int8 (uniform, ternary, binary). Its output is stored as u8
/// when the chain's only reader is an activation quantizer: the chain then does that rounding
/// itself. Other layers run in float on the dequantized values, which are exactly the
/// simulation's values, so the only differences from `Arithmetic.float` are float rounding at
/// the edges of rounding steps (the order of a sum, a scale folded into one multiplier).
public struct IntegerPlan: Sendable {
    public enum Placement: Sendable, Equatable {
        case int8
        /// Runs in float, for the reason given.
        case float(String)
    }

    public struct Layer: Sendable, Equatable {
        /// The conv or linear node.
        public var node: Int
        public var name: String
        public var placement: Placement
    }

    /// The model's weight layers in order, each with where it runs.
    public let layers: [Layer]
    /// Whether the plan was made for a CPU with VNNI (see `CPUCapabilities`).
    public let vnni: Bool
    /// The integer chains by the index of their convolution.
    let chains: [Int: IntegerChain]
    /// Quantizer nodes whose rounding an integer chain does when it stores its output.
    let absorbedQuantizers: Set<Int>

    public var integerLayerCount: Int { layers.filter { $0.placement == .int8 }.count }

    /// The plan `CompiledModel(model, arithmetic: .int8)` runs `model` with on this CPU.
    public static func of(_ model: Model) -> IntegerPlan {
        IntegerPlan(BiasQuantization.simulated(model))
    }

    /// Plans `model`, whose biases are already rounded as `BiasQuantization.simulated` does.
    public init(_ model: Model, vnni: Bool = CPUCapabilities.hasVNNI) {
        self.vnni = vnni
        let plan = ExecutionPlan(model)
        var fusions: [Int: ExecutionPlan.Fusion] = [:]
        for case .fused(let fusion)? in plan.steps { fusions[fusion.head] = fusion }
        var layers: [Layer] = []
        var chains: [Int: IntegerChain] = [:]
        var absorbed = Set<Int>()
        for index in model.weightLayerNodes {
            let node = model.nodes[index]
            let fusion = fusions[index] ?? ExecutionPlan.Fusion(head: index)
            switch IntegerChain.make(model, fusion: fusion, vnni: vnni) {
            case .success(let chain):
                chains[index] = chain
                if let quantizer = chain.outputQuantizer { absorbed.insert(quantizer) }
                layers.append(Layer(node: index, name: node.name, placement: .int8))
            case .failure(let reason):
                layers.append(Layer(node: index, name: node.name, placement: .float(reason.text)))
            }
        }
        self.layers = layers
        self.chains = chains
        absorbedQuantizers = absorbed
    }

    /// The u8 grid of the tensor node `index` outputs when it runs integer: an activation
    /// quantizer's, passed through the option-A shortcut (which only moves codes).
    static func byteGrid(of index: Int, in model: Model) -> ByteGrid? {
        guard index >= 0, index < model.nodes.count else { return nil }
        switch model.nodes[index].operation {
        case .fakeQuantize(let quantizer): return ByteGrid(quantizer)
        case .shortcutA: return model.nodes[index].inputs.first.flatMap { byteGrid(of: $0, in: model) }
        default: return nil
        }
    }
}

/// One convolution chain in integer form: what `DNNLConvolution` needs besides the shapes.
struct IntegerChain: Sendable {
    /// The weight codes, plain (O, I/G, KH, KW).
    var codes: [Int8]
    /// The bias in accumulator units (input scale x weight scale), BN shift included.
    var bias: [Float]
    /// Per output channel, accumulator to output: `S_in * S_w[c] * bn[c] / S_out` (no `/ S_out`
    /// for a float output).
    var outputScales: [Float]
    var input: ByteGrid
    /// Nil when the chain's output stays float.
    var output: ByteGrid?
    /// The quantizer node the chain's u8 output stands in for.
    var outputQuantizer: Int?
    /// The grid of the residual summed in, when the output is u8.
    var residual: ByteGrid?
    /// The clamp that ends the chain: infinity for ReLU, 6 for ReLU6, nil without one.
    var clampUpper: Float?

    struct Reason: Error {
        var text: String
        init(_ text: String) { self.text = text }
    }

    static func make(_ model: Model, fusion: ExecutionPlan.Fusion, vnni: Bool) -> Result<IntegerChain, Reason> {
        let node = model.nodes[fusion.head]
        guard case .conv(let conv) = node.operation else { return .failure(Reason("fully connected layers run in float")) }
        guard conv.precision.isQuantized else { return .failure(Reason("its weights are float")) }
        guard let source = node.inputs.first, let input = IntegerPlan.byteGrid(of: source, in: model) else {
            return .failure(Reason("its input has no activation quantizer of at most 8 bits"))
        }
        let weights: IntegerWeights
        do {
            guard let integer = try IntegerWeights(weight: conv.weight, precision: conv.precision, place: node.name) else {
                return .failure(Reason("its weights are float"))
            }
            weights = integer
        } catch {
            return .failure(Reason("its weights are off their grid"))
        }
        guard weights.storage == .int8, weights.zeroPoints.allSatisfy({ $0 == 0 }) else {
            return .failure(Reason("its weight grid is asymmetric or wider than 8 bits; oneDNN takes symmetric int8 weights"))
        }
        let channels = conv.outChannels
        let perChannel = conv.weight.count / max(1, channels)
        let codes = weights.codes.map { Int8(truncatingIfNeeded: $0) }
        if !vnni, let reason = pairSaturation(codes, perChannel: perChannel, inputMaximum: input.upper) {
            return .failure(Reason(reason))
        }

        // The chain's output: u8 when its only reader is a quantizer of at most 8 bits.
        let consumers = model.consumers(of: fusion.last)
        var output: ByteGrid?
        var outputQuantizer: Int?
        if consumers.count == 1, case .fakeQuantize(let quantizer) = model.nodes[consumers[0]].operation,
           let grid = ByteGrid(quantizer) {
            output = grid
            outputQuantizer = consumers[0]
        }
        var residual: ByteGrid?
        if let residualNode = fusion.residual, output != nil {
            guard let grid = IntegerPlan.byteGrid(of: residualNode, in: model) else {
                return .failure(Reason("the residual it adds is float"))
            }
            residual = grid
        }

        let batchNorm: (scale: [Float], shift: [Float])
        do {
            batchNorm = try fusion.channelMap(model, conv: conv)
        } catch {
            return .failure(Reason("its batch norm does not match it"))
        }
        var bias = [Float](repeating: 0, count: channels)
        var outputScales = [Float](repeating: 0, count: channels)
        for channel in 0..<channels {
            let weightScale = weights.scales[weights.scales.count == 1 ? 0 : channel]
            let accumulatorScale = input.scale * weightScale
            let normScale = batchNorm.scale[channel]
            guard normScale != 0, normScale.isFinite, accumulatorScale > 0 else {
                return .failure(Reason("its batch norm scales channel \(channel) by \(normScale)"))
            }
            bias[channel] = (conv.bias?.data[channel] ?? 0) / accumulatorScale
                + batchNorm.shift[channel] / (accumulatorScale * normScale)
            outputScales[channel] = accumulatorScale * normScale / (output?.scale ?? 1)
            guard bias[channel].isFinite, outputScales[channel].isFinite, outputScales[channel] != 0 else {
                return .failure(Reason("its scales leave float range in channel \(channel)"))
            }
        }
        return .success(IntegerChain(codes: codes, bias: bias, outputScales: outputScales, input: input, output: output,
                                     outputQuantizer: outputQuantizer, residual: residual, clampUpper: fusion.clampUpper))
    }

    /// Without VNNI, oneDNN sums pairs of u8 x s8 products in int16 with saturation. A pair can
    /// reach `inputMaximum * (p1 + p2)`, where p1 and p2 are the two largest positive codes of the
    /// output channel (and likewise below zero), whichever pairs the kernel forms; nil when no
    /// channel can pass -32768...32767.
    static func pairSaturation(_ codes: [Int8], perChannel: Int, inputMaximum: Int32) -> String? {
        guard perChannel > 0 else { return nil }
        var worst: Int32 = 0
        for start in stride(from: 0, to: codes.count, by: perChannel) {
            var positive: (Int32, Int32) = (0, 0)
            var negative: (Int32, Int32) = (0, 0)
            for code in codes[start..<min(start + perChannel, codes.count)] {
                let value = Int32(code)
                if value > positive.0 { positive = (value, positive.0) } else if value > positive.1 { positive.1 = value }
                if -value > negative.0 { negative = (-value, negative.0) } else if -value > negative.1 { negative.1 = -value }
            }
            worst = max(worst, max(positive.0 + positive.1, negative.0 + negative.1))
        }
        guard inputMaximum * worst > 32767 else { return nil }
        return "its input codes (up to \(inputMaximum)) times its largest weight pair could saturate oneDNN's int16 pair sums on a CPU without VNNI (this one: \(CPUCapabilities.isaName)); 7-bit weights (or 7-bit inputs) run in int8 here"
    }
}
