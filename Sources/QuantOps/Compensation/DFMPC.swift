/// Data-free mixed-precision compensation (methods.md §3): a low-precision conv `l` feeding a
/// high-precision conv `l+1` through (BN and) ReLU gets a per-channel coefficient `c_j >= 0` that
/// rescales its output channel `j` to make up for the quantization error of filter `j`.

public struct DFMPCOptions: Sendable, Equatable {
    public var lambda1: Float
    public var lambda2: Float
    /// DoReFa bits for the high layer of a pair that is still float.
    public var highBits: Int
    public var form: CompensationForm

    public init(lambda1: Float = 0.5, lambda2: Float = 0, highBits: Int = 6, form: CompensationForm = .deployment) {
        self.lambda1 = lambda1
        self.lambda2 = lambda2
        self.highBits = highBits
        self.form = form
    }
}

/// Where `c` is applied; both give the same function.
public enum CompensationForm: String, Sendable, Equatable, CaseIterable {
    /// Keeps layer `l+1` exactly on its grid. With BN kept: `gamma_j *= c_j`, `beta_j *= c_j`.
    /// With BN folded there is no BN to carry `c`, so filter `j` and bias `j` of the low layer are
    /// scaled instead: its integer codes stay, only its scales become per channel
    /// (`scale_j = c_j * scale`), which an integer deployment already supports. Scaling the input
    /// channels of `l+1` instead would leave that layer on no grid at all, because a grid has one
    /// scale per output channel, not per input channel.
    case deployment
    /// The paper's reference form `W_{l+1}[:, j] <- c_j * Q(W_{l+1})[:, j]`; for checking only, as
    /// it moves layer `l+1` off its quantization grid (its precision record no longer describes it).
    case inputChannels
}

/// Two convs joined by (BN and) ReLU, by node name.
public struct LayerPair: Sendable, Equatable, CustomStringConvertible {
    public var low: String
    public var high: String

    public init(low: String, high: String) {
        self.low = low
        self.high = high
    }

    public var description: String { "\(low) -> \(high)" }
}

public struct DFMPCReport: Sendable, Equatable {
    public struct PairResult: Sendable, Equatable {
        public var pair: LayerPair
        public var channels: Int
        public var cMin: Float
        public var cMax: Float
        public var cMean: Float
        public var guardedFilters: Int
        public var clampedFilters: Int
        /// True when this step quantized the high layer (it was float).
        public var quantizedHighLayer: Bool
        /// False when the pair's BN had been folded into the low conv.
        public var batchNormKept: Bool
        public var coefficients: [Float]
    }

    public var pairs: [PairResult]
    public var options: DFMPCOptions
    public var cMin: Float
    public var cMax: Float
    public var cMean: Float
    /// Filters whose loss had a zero denominator (all-zero filter and zero shift): `c = 1`.
    public var guardedFilters: Int
    /// Filters whose unconstrained minimizer was negative, set to 0 (the minimizer over `c >= 0`).
    public var clampedFilters: Int
    /// Time spent in the closed form over the weights.
    public var solveSeconds: Double
    /// Time for the whole step, including quantizing high layers and applying `c`.
    public var totalSeconds: Double
}

public enum DFMPC {
    /// The per-channel minimizer of paper Eq. 22 (Eq. 27):
    /// `c_j = (<Xh_j, X_j> + lambda1 yh_j y_j) / (|Xh_j|^2 + lambda1 yh_j^2 + lambda2)`,
    /// with `c_j = 1` where the denominator is 0 and `c_j = 0` where the minimizer is negative
    /// (the loss is convex in `c_j`, so that is the minimizer over `c_j >= 0`).
    public static func coefficients(full: [[Float]], quantized: [[Float]], shift: [Float], quantizedShift: [Float],
                                    lambda1: Float, lambda2: Float) -> [Float]
    {
        full.indices.map { j in
            var dot = 0.0
            var norm = 0.0
            for (x, xh) in zip(full[j], quantized[j]) {
                dot += Double(xh) * Double(x)
                norm += Double(xh) * Double(xh)
            }
            return solveChannel(dot: dot, quantizedNormSquared: norm, shift: Double(shift[j]),
                                quantizedShift: Double(quantizedShift[j]), lambda1: Double(lambda1),
                                lambda2: Double(lambda2)).c
        }
    }

    /// The loss of paper Eq. 22 for one channel, for checks and reports.
    public static func channelLoss(c: Float, full: [Float], quantized: [Float], shift: Float, quantizedShift: Float,
                                   lambda1: Float, lambda2: Float) -> Double
    {
        var loss = 0.0
        for (x, xh) in zip(full, quantized) {
            let d = Double(c) * Double(xh) - Double(x)
            loss += d * d
        }
        let shiftError = Double(c) * Double(quantizedShift) - Double(shift)
        return loss + Double(lambda1) * shiftError * shiftError + Double(lambda2) * Double(c) * Double(c)
    }

    enum ChannelOutcome { case solved, guarded, clamped }

    static func solveChannel(dot: Double, quantizedNormSquared: Double, shift: Double, quantizedShift: Double,
                             lambda1: Double, lambda2: Double) -> (c: Float, outcome: ChannelOutcome)
    {
        let denominator = quantizedNormSquared + lambda1 * quantizedShift * quantizedShift + lambda2
        guard denominator != 0 else { return (1, .guarded) }
        let c = (dot + lambda1 * quantizedShift * shift) / denominator
        return c < 0 ? (0, .clamped) : (Float(c), .solved)
    }

    // MARK: - Graph level

    /// Node indices of a conv whose output reaches exactly one conv through an optional BN and a
    /// ReLU or ReLU6, each feeding nothing else (so scaling channel `j` along the way affects only
    /// that conv). ReLU commutes with a positive scale exactly; ReLU6 only below its clip, which
    /// is how the method is applied to MobileNets.
    struct PairNodes {
        var low: Int
        var batchNorm: Int?
        var high: Int
    }

    /// All adjacent pairs in execution order; a conv may be the high layer of one pair and the low
    /// layer of the next (VGG-style chains).
    static func adjacentPairs(in model: Model) -> [PairNodes] {
        var pairs: [PairNodes] = []
        for (index, node) in model.nodes.enumerated() {
            guard case .conv(let low) = node.operation, var next = model.soleConsumer(of: index) else { continue }
            var batchNorm: Int?
            if case .batchNorm(let norm) = model.nodes[next].operation {
                guard norm.channels == low.outChannels, let afterNorm = model.soleConsumer(of: next) else { continue }
                batchNorm = next
                next = afterNorm
            }
            guard model.nodes[next].operation == .relu || model.nodes[next].operation == .relu6,
                  let highIndex = model.soleConsumer(of: next),
                  case .conv(let high) = model.nodes[highIndex].operation,
                  high.groups == 1, high.inChannels == low.outChannels
            else { continue }
            pairs.append(PairNodes(low: index, batchNorm: batchNorm, high: highIndex))
        }
        return pairs
    }

    /// Pairs that share no layer, as the paper pairs them (methods.md, Fig. 2): first a spatial
    /// conv followed by a 1x1 one (a bottleneck's 3x3 low with the 1x1 after it high, MobileNet's
    /// depthwise low with its pointwise high), then the rest greedily in execution order, so a
    /// basic block gives (conv1, conv2) and a plain chain alternates low, high, low, ...
    static func disjointPairs(in model: Model) -> [PairNodes] {
        func kernelArea(_ index: Int) -> Int {
            guard case .conv(let conv) = model.nodes[index].operation else { return 0 }
            return conv.weight.shape.dropFirst(2).reduce(1, *)
        }
        let candidates = adjacentPairs(in: model)
        let spatialThenPointwise = candidates.filter { kernelArea($0.low) > 1 && kernelArea($0.high) == 1 }
        var used = Set<Int>()
        var chosen: [PairNodes] = []
        for pair in spatialThenPointwise + candidates where !used.contains(pair.low) && !used.contains(pair.high) {
            used.formUnion([pair.low, pair.high])
            chosen.append(pair)
        }
        return chosen.sorted { $0.low < $1.low }
    }

    /// The pairs `mixed dfmpc` would use, by name.
    public static func pairs(in model: Model) -> [LayerPair] {
        disjointPairs(in: model).map { LayerPair(low: model.nodes[$0.low].name, high: model.nodes[$0.high].name) }
    }

    /// `mixed dfmpc low=... high=K`: in each pair (in a ResNet basic block: conv1, conv2) the first
    /// conv gets `low`, the second `highBits`-bit DoReFa. The stem, shortcut convs and the classifier
    /// are not part of any pair and stay as they are.
    @discardableResult
    public static func applyMixedPrecision(_ model: inout Model, low: WeightQuantizer, highBits: Int) throws
        -> [LayerPair]
    {
        guard WeightQuantizer.validBits(for: .dorefa).contains(highBits) else {
            throw QuantizationError(place: "mixed dfmpc", problem: "high=\(highBits) bits", remedy: "choose 1...16")
        }
        let pairs = disjointPairs(in: model)
        guard !pairs.isEmpty else {
            throw QuantizationError(place: "model \(model.name)",
                                    problem: "no conv feeds another conv through BN and ReLU, so there is nothing to pair",
                                    remedy: "choose the layers to quantize one by one instead")
        }
        let layerNumbers = Dictionary(uniqueKeysWithValues: model.weightLayerNodes.enumerated().map { ($1, $0 + 1) })
        for pair in pairs {
            for index in [pair.low, pair.high] {
                guard case .conv(let conv) = model.nodes[index].operation, conv.precision == .float32 else {
                    throw QuantizationError(place: model.nodes[index].name,
                                            problem: "is already quantized",
                                            remedy: "mixed precision starts from a float model; load it again")
                }
            }
        }
        // Changes go to a copy so that a refusal halfway leaves the caller's model as it was.
        var working = model
        for pair in pairs {
            try ModelTransforms.quantize(&working, layers: [layerNumbers[pair.low] ?? 0], with: low)
            try ModelTransforms.quantize(&working, layers: [layerNumbers[pair.high] ?? 0], with: .dorefa(bits: highBits))
        }
        model = working
        return pairs.map { LayerPair(low: model.nodes[$0.low].name, high: model.nodes[$0.high].name) }
    }

    /// Solves and applies `c` for every pair whose low conv is quantized. `reference` is the same
    /// network in full precision (as loaded, BN folded or not); it supplies `X_j` and `y_j`, the
    /// compensated model supplies `Xh_j` and `yh_j`. Because `Xh_j` then already includes an
    /// earlier `c`, running the step twice in deployment form leaves the model as it was.
    @discardableResult
    public static func compensate(_ model: inout Model, reference: Model, options: DFMPCOptions = DFMPCOptions())
        throws -> DFMPCReport
    {
        let clock = ContinuousClock()
        let start = clock.now
        guard options.lambda1 >= 0, options.lambda2 >= 0, options.lambda1.isFinite, options.lambda2.isFinite else {
            throw QuantizationError(place: "compensate dfmpc",
                                    problem: "lambda1 = \(options.lambda1), lambda2 = \(options.lambda2)",
                                    remedy: "both must be finite and >= 0 for the loss to be convex")
        }
        guard WeightQuantizer.validBits(for: .dorefa).contains(options.highBits) else {
            throw QuantizationError(place: "compensate dfmpc", problem: "high=\(options.highBits) bits",
                                    remedy: "choose 1...16")
        }
        let pairs = adjacentPairs(in: model).filter { pair in
            guard case .conv(let conv) = model.nodes[pair.low].operation else { return false }
            return conv.precision.isQuantized
        }
        guard !pairs.isEmpty else {
            throw QuantizationError(
                place: "model \(model.name)",
                problem: "no low-precision conv feeds another conv through BN and ReLU",
                remedy: "quantize the first conv of each pair first, e.g. with mixed precision")
        }
        let foldedReference = try referenceInForm(of: model, pairs: pairs, reference: reference)

        // Solve every pair before changing anything, so that chained pairs see the model as given.
        var solveTime = Duration.zero
        var results: [DFMPCReport.PairResult] = []
        for pair in pairs {
            let solveStart = clock.now
            let full = try stage(named: model.nodes[pair.low].name, in: foldedReference, keepsBatchNorm: pair.batchNorm != nil)
            let quantized = try stage(at: pair.low, batchNorm: pair.batchNorm, in: model)
            var coefficients = [Float](repeating: 1, count: quantized.channels)
            var guarded = 0
            var clamped = 0
            let perChannel = quantized.weight.count / quantized.channels
            try full.weight.data.withUnsafeBufferPointer { x in
                try quantized.weight.data.withUnsafeBufferPointer { xh in
                    guard x.count == xh.count else {
                        throw QuantizationError(place: model.nodes[pair.low].name,
                                                problem: "the reference weight has \(x.count) values, the model's \(xh.count)",
                                                remedy: "compensate against the model this one was quantized from")
                    }
                    for j in 0..<quantized.channels {
                        var dot = 0.0
                        var norm = 0.0
                        for k in j * perChannel ..< (j + 1) * perChannel {
                            dot += Double(xh[k]) * Double(x[k])
                            norm += Double(xh[k]) * Double(xh[k])
                        }
                        // X_j = g_j W[j] and Xh_j = gh_j Wh[j], so the sums scale by g_j * gh_j and gh_j^2.
                        let (c, outcome) = solveChannel(
                            dot: dot * full.scale[j] * quantized.scale[j],
                            quantizedNormSquared: norm * quantized.scale[j] * quantized.scale[j],
                            shift: full.shift[j], quantizedShift: quantized.shift[j],
                            lambda1: Double(options.lambda1), lambda2: Double(options.lambda2))
                        coefficients[j] = c
                        if outcome == .guarded { guarded += 1 }
                        if outcome == .clamped { clamped += 1 }
                    }
                }
            }
            solveTime += clock.now - solveStart
            var highIsFloat = false
            if case .conv(let high) = model.nodes[pair.high].operation { highIsFloat = high.precision == .float32 }
            results.append(DFMPCReport.PairResult(
                pair: LayerPair(low: model.nodes[pair.low].name, high: model.nodes[pair.high].name),
                channels: coefficients.count, cMin: coefficients.min() ?? 1, cMax: coefficients.max() ?? 1,
                cMean: coefficients.reduce(0, +) / Float(max(coefficients.count, 1)),
                guardedFilters: guarded, clampedFilters: clamped, quantizedHighLayer: highIsFloat,
                batchNormKept: pair.batchNorm != nil, coefficients: coefficients))
        }

        var working = model
        for (pair, result) in zip(pairs, results) {
            if result.quantizedHighLayer {
                try quantizeConv(at: pair.high, in: &working, with: .dorefa(bits: options.highBits))
            }
            apply(result.coefficients, to: pair, in: &working, form: options.form)
        }
        model = working

        let all = results.flatMap(\.coefficients)
        return DFMPCReport(
            pairs: results, options: options, cMin: all.min() ?? 1, cMax: all.max() ?? 1,
            cMean: all.reduce(0, +) / Float(max(all.count, 1)),
            guardedFilters: results.reduce(0) { $0 + $1.guardedFilters },
            clampedFilters: results.reduce(0) { $0 + $1.clampedFilters },
            solveSeconds: solveTime.seconds, totalSeconds: (clock.now - start).seconds)
    }

    /// A conv and the BN after it as one affine map per output channel:
    /// `scale_j * (W[j] * x) + shift_j` with `scale_j = g_j` and `shift_j = beta_j + g_j (b_j - mu_j)`,
    /// or `scale_j = 1`, `shift_j = b_j` without BN (folded).
    struct Stage {
        var weight: Tensor
        var scale: [Double]
        var shift: [Double]
        var channels: Int { scale.count }
    }

    static func stage(at convIndex: Int, batchNorm: Int?, in model: Model) throws -> Stage {
        guard case .conv(let conv) = model.nodes[convIndex].operation else {
            throw QuantizationError(place: model.nodes[convIndex].name, problem: "is not a conv")
        }
        let bias = (0..<conv.outChannels).map { Double(conv.bias?.data[$0] ?? 0) }
        guard let batchNorm, case .batchNorm(let norm) = model.nodes[batchNorm].operation else {
            return Stage(weight: conv.weight, scale: bias.map { _ in 1 }, shift: bias)
        }
        let (g, normShift) = ModelTransforms.batchNormAffine(norm)
        return Stage(weight: conv.weight, scale: g, shift: bias.indices.map { normShift[$0] + g[$0] * bias[$0] })
    }

    static func stage(named name: String, in reference: Model, keepsBatchNorm: Bool) throws -> Stage {
        guard let index = reference.nodeIndex(named: name), case .conv(let conv) = reference.nodes[index].operation else {
            throw QuantizationError(place: name, problem: "the reference model has no conv of that name",
                                    remedy: "compensate against the model this one was quantized from")
        }
        guard conv.precision == .float32 else {
            throw QuantizationError(place: name, problem: "is \(conv.precision.label) in the reference model",
                                    remedy: "the reference must be the full-precision model")
        }
        var batchNorm: Int?
        if keepsBatchNorm {
            guard let next = reference.soleConsumer(of: index), case .batchNorm = reference.nodes[next].operation else {
                throw QuantizationError(place: name, problem: "the reference model has no BN after this conv, the model has",
                                        unmet: .unfoldedBatchNorms)
            }
            batchNorm = next
        }
        return try stage(at: index, batchNorm: batchNorm, in: reference)
    }

    /// The reference with its BN folded where the model's pairs have theirs folded.
    static func referenceInForm(of model: Model, pairs: [PairNodes], reference: Model) throws -> Model {
        guard pairs.contains(where: { $0.batchNorm == nil }) else { return reference }
        var folded = reference
        try ModelTransforms.foldBatchNorm(&folded)
        return folded
    }

    static func quantizeConv(at index: Int, in model: inout Model, with quantizer: WeightQuantizer) throws {
        guard case .conv(var conv) = model.nodes[index].operation else { return }
        do {
            (conv.weight, conv.precision) = try quantizer.quantize(conv.weight)
        } catch let error as QuantizationError {
            throw error.located(at: model.nodes[index].name)
        }
        model.nodes[index].operation = .conv(conv)
    }

    static func apply(_ c: [Float], to pair: PairNodes, in model: inout Model, form: CompensationForm) {
        switch form {
        case .inputChannels:
            guard case .conv(var high) = model.nodes[pair.high].operation else { return }
            let (outChannels, inChannels) = (high.weight.shape[0], high.weight.shape[1])
            let kernel = high.weight.count / (outChannels * inChannels)
            for o in 0..<outChannels {
                for j in 0..<inChannels {
                    let base = (o * inChannels + j) * kernel
                    for k in base ..< base + kernel { high.weight.data[k] *= c[j] }
                }
            }
            model.nodes[pair.high].operation = .conv(high)
        case .deployment:
            if let batchNorm = pair.batchNorm, case .batchNorm(var norm) = model.nodes[batchNorm].operation {
                for j in 0..<norm.channels {
                    norm.gamma.data[j] *= c[j]
                    norm.beta.data[j] *= c[j]
                }
                model.nodes[batchNorm].operation = .batchNorm(norm)
            } else if case .conv(var low) = model.nodes[pair.low].operation {
                let perChannel = low.weight.count / low.outChannels
                for j in 0..<low.outChannels {
                    for k in j * perChannel ..< (j + 1) * perChannel { low.weight.data[k] *= c[j] }
                }
                if var bias = low.bias {
                    for j in 0..<bias.count { bias.data[j] *= c[j] }
                    low.bias = bias
                }
                low.precision = low.precision.scaledPerOutputChannel(by: c)
                model.nodes[pair.low].operation = .conv(low)
            }
        }
    }
}

extension Duration {
    var seconds: Double {
        let (whole, fraction) = components
        return Double(whole) + Double(fraction) * 1e-18
    }
}
