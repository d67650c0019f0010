/// How batch norm nodes normalize during a recorded forward pass.
public enum BatchNormMode: Sendable, Equatable {
    /// Running statistics, as in evaluation: a fixed per-channel affine map.
    case inference
    /// The batch's own mean and biased variance, as in training; the running statistics are
    /// neither used nor updated.
    case batchStatistics
}

/// Gradients of a scalar with respect to the model's input and parameters.
public struct Gradients: Sendable {
    /// With respect to the input batch; nil when not asked for.
    public var input: Tensor?
    /// By node index: conv and linear weights and biases, batch-norm gamma (`weight`) and beta
    /// (`bias`), and the step size of fake-quantized activations (`weight`, one element).
    public var parameters: [Int: ParameterGradient]
}

/// A forward pass that keeps every node's output, so that gradients can be taken backwards.
///
/// The forward pass runs node by node and keeps every output as a plain NCHW tensor.
/// Convolutions run on oneDNN's training primitives (forward, backward data, backward
/// weights; blocked layouts inside, reorders at the boundaries, primitives shared across tapes
/// of the same shapes) when `ConvolutionBackend.current` is `.oneDNN`, else on im2col + GEMM
/// and its transposes. It is a value: running `backward` several times with different seeds
/// is allowed.
public struct GradientTape: Sendable {
    public let model: Model
    public let batchNormMode: BatchNormMode
    /// The last node that was run; later nodes are not part of the tape.
    public let lastNode: Int
    /// Every node's output up to `lastNode`.
    public private(set) var outputs: [Tensor]
    /// Batch statistics of each batch norm node, in `.batchStatistics` mode.
    public private(set) var batchStatistics: [Int: BatchStatistics] = [:]

    /// Runs `model` on `input` up to and including node `lastNode` (default: the whole model).
    public init(model: Model, input: Tensor, batchNormMode: BatchNormMode = .inference, through lastNode: Int? = nil) throws {
        guard !model.nodes.isEmpty else { throw EngineError(node: model.name, problem: "the model has no nodes") }
        let last = lastNode ?? model.nodes.count - 1
        guard last >= 0, last < model.nodes.count else {
            throw EngineError(node: model.name, problem: "node \(last) is outside the model's \(model.nodes.count) nodes")
        }
        guard input.rank == 4 else {
            throw EngineError(node: model.nodes[0].name, problem: "expected an image batch (N, C, H, W), got \(describeShape(input.shape))")
        }
        self.model = model
        self.batchNormMode = batchNormMode
        self.lastNode = last
        outputs = []
        outputs.reserveCapacity(last + 1)
        let stream = try? Self.convolutionStream()
        var readers = [[Int]](repeating: [], count: last + 1)
        for (index, node) in model.nodes[0 ... last].enumerated() {
            for source in node.inputs where source >= 0 && source < index { readers[source].append(index) }
        }
        // Clamp outputs computed in the same pass as the batch norm they read.
        var pending: [Int: Tensor] = [:]
        for index in 0 ... last {
            let node = model.nodes[index]
            if let output = pending.removeValue(forKey: index) {
                outputs.append(output)
                continue
            }
            let inputs = try node.inputs.map { source -> Tensor in
                guard source >= 0, source < index else {
                    throw EngineError(node: node.name, problem: "input \(source) is not an earlier node of the model")
                }
                return outputs[source]
            }
            switch node.operation {
            case .input:
                outputs.append(input)
            case .batchNorm(var norm):
                guard inputs.count == 1 else {
                    throw EngineError(node: node.name, problem: "takes 1 input, was given \(inputs.count)")
                }
                let input = inputs[0]
                guard input.rank >= 2, input.shape[1] == norm.channels, norm.beta.count == norm.channels,
                      norm.gamma.count == norm.channels, norm.runningMean.count == norm.channels,
                      norm.runningVar.count == norm.channels else {
                    throw EngineError(node: node.name, problem: "batch norm over \(norm.channels) channels cannot take input \(describeShape(input.shape))")
                }
                if batchNormMode == .batchStatistics {
                    let statistics = try Self.measure(input, channels: norm.channels, node: node.name)
                    batchStatistics[index] = statistics
                    norm.runningMean = Tensor(shape: norm.runningMean.shape, data: statistics.mean)
                    norm.runningVar = Tensor(shape: norm.runningVar.shape, data: statistics.variance)
                }
                let (scale, shift) = norm.scaleAndShift()
                // A clamp that is the batch norm's only reader is computed in the same pass.
                if readers[index].count == 1, let reader = readers[index].first, model.nodes[reader].inputs == [index],
                   let upper = model.nodes[reader].operation.clampUpperBound {
                    let (normalized, clamped) = TapeKernels.affine(input, scale: scale, shift: shift, thenClampTo: 0, upper)
                    outputs.append(normalized)
                    pending[reader] = clamped
                } else {
                    outputs.append(TapeKernels.affine(input, scale: scale, shift: shift))
                }
            default:
                // Convolutions on oneDNN's training primitives when there is a stream.
                outputs.append(try ForwardPass.evaluate(node, inputs: inputs, context: KernelContext(node: node.name, stream: stream)))
            }
        }
    }

    /// A stream for the oneDNN convolutions of one pass, with oneDNN's threads set to the
    /// engine's; nil when the GEMM kernels are selected.
    static func convolutionStream() throws -> DNNLStream? {
        guard ConvolutionBackend.current == .oneDNN else { return nil }
        DNNLEngine.applyThreadCount(EngineSettings.threads)
        return try DNNLStream()
    }

    /// The output of the last node on the tape.
    public var output: Tensor { outputs[lastNode] }

    /// Per-channel mean and biased variance over batch and space, as batch norm measures them.
    public static func measure(_ input: Tensor, channels: Int, node: String) throws -> BatchStatistics {
        guard input.rank >= 2, input.shape[1] == channels else {
            throw EngineError(node: node, problem: "batch norm over \(channels) channels cannot take input \(describeShape(input.shape))")
        }
        let moments = channelMoments(input, channels: channels)
        return BatchStatistics(mean: moments.mean.map { Float($0) }, variance: moments.variance.map { Float($0) })
    }

    /// Per-channel mean and biased variance of an (N, C, ...) tensor: two passes (the mean, then
    /// squares centred on it, so no cancellation), Float within a plane and Double across
    /// planes, each channel in image order whatever the thread count.
    static func channelMoments(_ input: Tensor, channels: Int) -> (mean: [Double], variance: [Double]) {
        let batch = input.shape[0]
        let plane = input.count / max(batch * channels, 1)
        let count = Double(batch * plane)
        var mean = [Double](repeating: 0, count: channels)
        var variance = [Double](repeating: 0, count: channels)
        guard input.count > 0 else { return (mean, variance) }
        input.data.withUnsafeBufferPointer { xBuffer in
            mean.withUnsafeMutableBufferPointer { meanBuffer in
                variance.withUnsafeMutableBufferPointer { varianceBuffer in
                    let x = xBuffer.baseAddress!, meanBase = meanBuffer.baseAddress!, varianceBase = varianceBuffer.baseAddress!
                    parallelFor(channels) { _, c in
                        var sum = 0.0
                        for n in 0 ..< batch {
                            let base = (n * channels + c) * plane
                            sum += Double(TapeKernels.planeMoments(x, centre: 0, range: base ..< base + plane).sum)
                        }
                        let m = sum / count
                        let centre = Float(m)
                        var squares = 0.0
                        for n in 0 ..< batch {
                            let base = (n * channels + c) * plane
                            squares += Double(TapeKernels.planeMoments(x, centre: centre, range: base ..< base + plane).squares)
                        }
                        meanBase[c] = m
                        varianceBase[c] = squares / count
                    }
                }
            }
        }
        return (mean, variance)
    }

    /// Gradients of the scalar `sum over seeds of <seed, output of node>`.
    ///
    /// `seeds[node]` is the gradient of the scalar with respect to that node's output; seeding
    /// several nodes adds their contributions, which is how a loss over intermediate outputs
    /// (such as batch statistics) is differentiated. With `parameters == false` no weight
    /// gradient is formed, which saves a GEMM per convolution when only the input matters.
    /// `stepSizes` adds the gradient of each fake-quantized activation's step size (LSQ), for
    /// training activation ranges; it costs a pass over every quantized activation.
    public func backward(seeds: [Int: Tensor], input wantInput: Bool = true, parameters wantParameters: Bool = true,
                         stepSizes wantStepSizes: Bool = false) throws -> Gradients {
        var gradients = [Tensor?](repeating: nil, count: lastNode + 1)
        for (index, seed) in seeds {
            guard index >= 0, index <= lastNode else {
                throw EngineError(node: model.name, problem: "seed for node \(index), which is not on the tape (0...\(lastNode))")
            }
            guard seed.shape == outputs[index].shape else {
                throw EngineError(node: model.nodes[index].name,
                                  problem: "seed \(describeShape(seed.shape)) does not match the output \(describeShape(outputs[index].shape))")
            }
            gradients[index] = seed
        }
        // Whether a node's gathered gradient is storage this pass created and nothing else
        // references (not a seed, not handed to two inputs), so that sums may go into it.
        var owned = [Bool](repeating: false, count: lastNode + 1)
        // Nodes whose inputs need no gradient: nothing upstream of them leads to a parameter or
        // (when asked) the input.
        let needed = nodesNeedingGradient(wantInput: wantInput, wantParameters: wantParameters)
        var readers = [Int](repeating: 0, count: lastNode + 1)
        for node in model.nodes[0 ... lastNode] { for source in node.inputs where source >= 0 && source <= lastNode { readers[source] += 1 } }
        let stream = try? Self.convolutionStream()
        var result = Gradients(input: nil, parameters: [:])
        for index in stride(from: lastNode, through: 0, by: -1) {
            guard let outputGradient = gradients[index] else { continue }
            gradients[index] = nil
            let node = model.nodes[index]
            if node.operation == .input {
                if wantInput { result.input = outputGradient }
                continue
            }
            do {
                if let plan = elementwisePlan(index, needed: needed, readers: readers, gradients: gradients,
                                              wantParameters: wantParameters) {
                    // The adjoint writes the target's gradient directly, adding what it already had.
                    let addend = gradients[plan.target]
                    gradients[plan.target] = nil
                    let step = try plan.adjoint.run(outputGradient, addend: addend)
                    gradients[plan.target] = step.gradient
                    owned[plan.target] = true
                    if let normNode = plan.normNode, case .batchNorm(let norm) = model.nodes[normNode].operation,
                       let sums = step.sums, let weighted = step.weightedSums {
                        let inverseSigma = norm.runningVar.data.map { 1 / (Double($0) + Double(norm.epsilon)).squareRoot() }
                        result.parameters[normNode] = ParameterGradient(
                            weight: Tensor(shape: norm.gamma.shape, data: (0 ..< norm.channels).map { Float(weighted[$0] * inverseSigma[$0]) }),
                            bias: Tensor(shape: norm.beta.shape, data: sums.map { Float($0) }))
                    }
                    continue
                }
                let step = try node.operation.rule.adjoint(AdjointRequest(
                    inputs: node.inputs.map { outputs[$0] }, outputGradient: outputGradient,
                    wantInput: node.inputs.contains { needed[$0] }, wantParameters: wantParameters, wantStepSize: wantStepSizes,
                    stream: stream, batchStatistics: batchStatistics[index], node: node.name))
                if let parameters = step.parameters { result.parameters[index] = parameters }
                for (source, gradient) in zip(node.inputs, step.inputs) where needed[source] {
                    guard var gradient else { continue }
                    guard var existing = gradients[source] else {
                        gradients[source] = gradient
                        owned[source] = step.fresh
                        continue
                    }
                    gradients[source] = nil
                    if owned[source] {
                        try TapeKernels.accumulate(&existing, gradient)
                        gradients[source] = existing
                    } else if step.fresh {
                        try TapeKernels.accumulate(&gradient, existing)
                        gradients[source] = gradient
                    } else {
                        gradients[source] = try Kernels.add(existing, gradient)
                    }
                    owned[source] = true
                }
            } catch let problem as ShapeProblem {
                throw EngineError(node: node.name, problem: problem.problem)
            }
        }
        return result
    }

    /// A clamp or inference batch norm whose adjoint runs as one `ElementwiseBackward` pass:
    /// the target node that receives the gradient, and the batch norm whose parameters the pass
    /// also differentiates. A clamp reading a batch norm that nothing else reads (and that has
    /// no seed of its own) takes the batch norm's adjoint into the same pass.
    private func elementwisePlan(_ index: Int, needed: [Bool], readers: [Int], gradients: [Tensor?],
                                 wantParameters: Bool) -> (adjoint: ElementwiseBackward, target: Int, normNode: Int?)? {
        let node = model.nodes[index]
        guard node.inputs.count == 1, let source = node.inputs.first else { return nil }
        func norm(_ index: Int) -> BatchNorm? {
            guard batchStatistics[index] == nil, case .batchNorm(let norm) = model.nodes[index].operation,
                  model.nodes[index].inputs.count == 1, outputs[index].rank >= 2, outputs[index].shape[1] == norm.channels,
                  norm.runningVar.count == norm.channels, norm.runningMean.count == norm.channels,
                  norm.gamma.count == norm.channels, norm.beta.count == norm.channels else { return nil }
            return norm
        }
        var adjoint = ElementwiseBackward()
        var normNode: Int? = nil
        var target = source
        switch node.operation.rule.fusion {
        case .clamp(let upper):
            adjoint.clampInput = outputs[source]
            adjoint.upper = upper
            if let norm = norm(source), readers[source] == 1, gradients[source] == nil,
               let normInput = model.nodes[source].inputs.first, needed[normInput] {
                adjoint.scale = norm.scaleAndShift().scale
                normNode = source
                target = normInput
            }
        case .batchNorm:
            guard norm(index) != nil else { return nil }
            normNode = index
        default:
            return nil
        }
        guard needed[target] else { return nil }
        if let normNode, let norm = norm(normNode) {
            adjoint.scale = norm.scaleAndShift().scale
            if wantParameters {
                adjoint.normInput = outputs[model.nodes[normNode].inputs[0]]
                adjoint.mean = norm.runningMean.data
            }
        }
        return (adjoint, target, normNode)
    }

    /// Whether each node's output gradient is worth computing: the node is the input (when its
    /// gradient is asked for), has parameters (when theirs are), or reads such a node.
    private func nodesNeedingGradient(wantInput: Bool, wantParameters: Bool) -> [Bool] {
        var needed = [Bool](repeating: false, count: lastNode + 1)
        for index in 0 ... lastNode {
            let node = model.nodes[index]
            switch node.operation {
            case .input: needed[index] = wantInput
            case .conv, .linear, .batchNorm: needed[index] = wantParameters || node.inputs.contains { needed[$0] }
            default: needed[index] = node.inputs.contains { needed[$0] }
            }
        }
        return needed
    }
}
