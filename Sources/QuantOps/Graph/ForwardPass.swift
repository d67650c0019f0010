/// Runs a `Model` on a batch of images.
///
/// Every whole-model run goes through `CompiledModel`, the one executor: eval, calibration,
/// analysis and sensitivity see the same numerics, fused where nothing observes. This enum keeps
/// the entry points that take a model and an input, and the plain node-by-node path that tests
/// use as an independent check (`reference`) and that the executor falls back to when the
/// convolution backend is im2col + GEMM.
///
/// Intermediate outputs are released as soon as their last consumer has run, so memory stays
/// at a few activations of the batch however deep the network is.
public enum ForwardPass {
    /// Logits (N, classes) for a normalized batch (N, 3, H, W).
    public static func logits(_ model: Model, input: Tensor) throws -> Tensor {
        try CompiledModel(model).logits(input)
    }

    /// The output of the model's last node.
    public static func run(_ model: Model, input: Tensor) throws -> Tensor {
        try CompiledModel(model).run(input)
    }

    /// The output of the model's last node. `observe(index, output)` is called, in order, with
    /// the own output of every node in `observing`; the executor fuses as usual except that an
    /// observed node always ends its fused chain, so what is observed is what that node computes.
    public static func run(_ model: Model, input: Tensor, observing: Set<Int>,
                           observe: (Int, Tensor) -> Void) throws -> Tensor {
        try withoutActuallyEscaping(observe) { observe in
            try CompiledModel(model, observing: observing).run(input, observe: observe)
        }
    }

    /// The plain path, node by node with nothing fused: im2col + SGEMM convolutions on NCHW
    /// tensors. Kept so that tests can check the executor against arithmetic written
    /// independently of it; `observe` sees every node's output.
    public static func reference(_ model: Model, input: Tensor, observe: ((Int, Tensor) -> Void)? = nil) throws -> Tensor {
        try runPlain(model, input: input, plan: ExecutionPlan(model, observing: Set(model.nodes.indices)), observe: observe)
    }

    /// `plan` on the plain kernels; `observe` sees the outputs of the nodes the plan keeps visible.
    static func runPlain(_ model: Model, input: Tensor, plan: ExecutionPlan,
                         observe: ((Int, Tensor) -> Void)?) throws -> Tensor {
        try checkInput(model, input)
        // Biases of integer layers with a quantized input, rounded to int32 as a runtime stores them.
        let model = BiasQuantization.simulated(model)
        var outputs = [Tensor?](repeating: nil, count: model.nodes.count)
        func value(_ source: Int, for index: Int) throws -> Tensor {
            guard source >= 0, source < model.nodes.count, let value = outputs[source] else {
                throw EngineError(node: model.nodes[index].name, problem: "input \(source) is not an earlier node of the model")
            }
            return value
        }
        for index in model.nodes.indices {
            guard let step = plan.steps[index] else { continue }
            let result: Tensor
            switch step {
            case .single:
                let node = model.nodes[index]
                result = node.operation == .input
                    ? input : try evaluate(node, inputs: node.inputs.map { try value($0, for: index) })
            case .fused(let fusion):
                let head = model.nodes[fusion.head]
                result = try fusion.evaluate(model, inputs: head.inputs.map { try value($0, for: fusion.head) },
                                             residual: fusion.residual.map { try value($0, for: fusion.add ?? index) })
            }
            for source in plan.released(after: index) { outputs[source] = nil }
            if plan.observing.contains(index) { observe?(index, result) }
            outputs[index] = result
        }
        guard let output = outputs[model.nodes.count - 1] else {
            throw EngineError(node: model.nodes[model.nodes.count - 1].name, problem: "the last node produced no output")
        }
        return output
    }

    /// What every executor refuses before it starts: an empty model or an input that is not an image batch.
    static func checkInput(_ model: Model, _ input: Tensor) throws {
        guard !model.nodes.isEmpty else {
            throw EngineError(node: model.name, problem: "the model has no nodes")
        }
        guard input.rank == 4 else {
            throw EngineError(node: model.nodes[0].name,
                              problem: "expected an image batch (N, C, H, W), got \(describeShape(input.shape))")
        }
    }

    /// One node on the given input tensors, so that other code can walk the graph itself.
    public static func evaluate(_ node: Node, inputs: [Tensor]) throws -> Tensor {
        try evaluate(node, inputs: inputs, context: KernelContext(node: node.name))
    }

    /// One node by its entry in the operation table; the context says where convolutions run.
    static func evaluate(_ node: Node, inputs: [Tensor], context: KernelContext) throws -> Tensor {
        let rule = node.operation.rule
        guard rule.arity.accepts(inputs.count) else {
            throw EngineError(node: node.name, problem: "takes \(rule.arity.description) input(s), was given \(inputs.count)")
        }
        do {
            return try rule.forward(inputs, context)
        } catch let problem as ShapeProblem {
            throw EngineError(node: node.name, problem: problem.problem)
        }
    }
}

/// Which nodes run, which run fused with their neighbours, and when each output is last read.
///
/// A fused chain runs at the position of its last member and its result is stored there, so
/// every input of the chain (including a residual computed after the convolution) is ready.
struct ExecutionPlan {
    enum Step {
        case single
        case fused(Fusion)
    }

    /// conv [-> batch norm] [-> add residual] [-> ReLU or ReLU6], or add -> ReLU/ReLU6.
    struct Fusion {
        var head: Int
        var batchNorm: Int?
        var add: Int?
        /// The add's other input, summed into the convolution's output.
        var residual: Int?
        /// The ReLU or ReLU6 node that ends the chain.
        var relu: Int?
        /// The upper bound of that clamp: infinity for ReLU, 6 for ReLU6; nil without one.
        var clampUpper: Float?

        var members: [Int] { [head, batchNorm, add, relu].compactMap { $0 } }
        var last: Int { members.max() ?? head }

        /// The per-channel map of the chain's convolution: folded batch norm, no clamp.
        func channelMap(_ model: Model, conv: Conv2D) throws -> (scale: [Float], shift: [Float]) {
            guard let batchNorm, case .batchNorm(let norm) = model.nodes[batchNorm].operation else {
                return ([Float](repeating: 1, count: conv.outChannels), [Float](repeating: 0, count: conv.outChannels))
            }
            guard norm.channels == conv.outChannels else {
                throw EngineError(node: model.nodes[batchNorm].name,
                                  problem: "batch norm over \(norm.channels) channels follows a convolution with \(conv.outChannels)")
            }
            return norm.scaleAndShift()
        }

        func evaluate(_ model: Model, inputs: [Tensor], residual: Tensor?) throws -> Tensor {
            let node = model.nodes[head]
            do {
                switch node.operation {
                case .conv(let conv):
                    let (scale, shift) = try channelMap(model, conv: conv)
                    let clampHere = clampUpper != nil && residual == nil
                    let output = try Kernels.conv2d(inputs[0], conv,
                                                    epilogue: ChannelEpilogue(scale: scale, shift: shift, lower: clampHere ? 0 : -.infinity,
                                                                              upper: clampHere ? clampUpper! : .infinity))
                    guard let residual else { return output }
                    return try Kernels.add(output, residual, clampTo: clampUpper)
                case .add:
                    guard inputs.count == 2 else {
                        throw EngineError(node: node.name, problem: "takes 2 inputs, was given \(inputs.count)")
                    }
                    return try Kernels.add(inputs[0], inputs[1], clampTo: clampUpper)
                default:
                    return try ForwardPass.evaluate(node, inputs: inputs)
                }
            } catch let problem as ShapeProblem {
                throw EngineError(node: add.map { model.nodes[$0].name } ?? node.name, problem: problem.problem)
            }
        }
    }

    /// Indexed by the position a step runs at; nil where the node runs inside a fused step.
    var steps: [Step?]
    /// Nodes whose own output a caller reads: each ends its fused chain, if it is in one.
    let observing: Set<Int>
    /// The step position after which each output is no longer read.
    var lastUse: [Int]
    private var releases: [[Int]]

    /// Fuses every chain it can, except that no node in `observing` is absorbed into a chain
    /// as anything but its last member, so its own output is still computed and stored.
    init(_ model: Model, observing: Set<Int> = []) {
        self.observing = observing
        let count = model.nodes.count
        var consumers = [[Int]](repeating: [], count: count)
        for (index, node) in model.nodes.enumerated() {
            for source in node.inputs where source >= 0 && source < count && !consumers[source].contains(index) {
                consumers[source].append(index)
            }
        }
        steps = [Step?](repeating: .single, count: count)
        var runsAt = Array(0..<count)
        var absorbed = Set<Int>()
        /// The one consumer of `index` that matches, when the chain may grow past `index`.
        func sole(_ index: Int, _ matches: (Node) -> Bool) -> Int? {
            guard !observing.contains(index), consumers[index].count == 1, let next = consumers[index].first, !absorbed.contains(next),
                  matches(model.nodes[next]) else { return nil }
            return next
        }
        func isBatchNorm(_ node: Node) -> Bool { if case .batchNorm = node.operation { return true } else { return false } }
        for index in 0..<count where !absorbed.contains(index) {
            var fusion = Fusion(head: index)
            var tail = index
            switch model.nodes[index].operation.rule.fusion {
            case .convolution:
                if let norm = sole(tail, { $0.operation.rule.fusion == .batchNorm && $0.inputs.count == 1 }) {
                    fusion.batchNorm = norm
                    tail = norm
                }
                if let add = sole(tail, { $0.operation.rule.fusion == .sum && $0.inputs.count == 2 && Set($0.inputs).count == 2 }) {
                    fusion.add = add
                    fusion.residual = model.nodes[add].inputs.first { $0 != tail }
                    tail = add
                }
            case .sum:
                break
            default:
                continue
            }
            if let relu = sole(tail, { $0.operation.clampUpperBound != nil && $0.inputs.count == 1 }) {
                fusion.relu = relu
                fusion.clampUpper = model.nodes[relu].operation.clampUpperBound
            }
            guard fusion.members.count > 1 else { continue }
            for member in fusion.members {
                absorbed.insert(member)
                steps[member] = nil
                runsAt[member] = fusion.last
            }
            steps[fusion.last] = .fused(fusion)
        }
        // The last node's output is the result, so it is never released.
        lastUse = consumers.map { readers in readers.map { runsAt[$0] }.max() ?? count }
        releases = [[Int]](repeating: [], count: count)
        for source in 0..<count where lastUse[source] < count && steps[source] != nil {
            releases[lastUse[source]].append(source)
        }
    }

    /// Outputs that no step after `index` reads.
    func released(after index: Int) -> [Int] { releases[index] }
}

extension ExecutionPlan.Fusion {
    init(head: Int) {
        self.init(head: head, batchNorm: nil, add: nil, residual: nil, relu: nil, clampUpper: nil)
    }
}
