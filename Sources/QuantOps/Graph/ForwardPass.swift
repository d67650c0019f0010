/// Runs a `Model` on a batch of images.
///
/// Intermediate outputs are released as soon as their last consumer has run, so memory stays
/// at a few activations of the batch however deep the network is.
public enum ForwardPass {
    /// Logits (N, classes) for a normalized batch (N, 3, H, W).
    public static func logits(_ model: Model, input: Tensor) throws -> Tensor {
        let output = try run(model, input: input)
        guard output.rank == 2, output.shape[0] == input.shape.first else {
            throw EngineError(node: model.nodes.last?.name ?? model.name,
                              problem: "the model's output \(describeShape(output.shape)) is not (batch, classes)")
        }
        return output
    }

    /// The output of the model's last node. `observe(index, output)` is called for every node
    /// in order, with that node's own output; without an observer the executor fuses a
    /// convolution with its following batch norm and ReLU (and an add with its ReLU), which
    /// an observer would need to see separately.
    public static func run(_ model: Model, input: Tensor, observe: ((Int, Tensor) -> Void)? = nil) throws -> Tensor {
        guard !model.nodes.isEmpty else {
            throw EngineError(node: model.name, problem: "the model has no nodes")
        }
        guard input.rank == 4 else {
            throw EngineError(node: model.nodes[0].name,
                              problem: "expected an image batch (N, C, H, W), got \(describeShape(input.shape))")
        }
        let plan = ExecutionPlan(model, fuse: observe == nil)
        var outputs = [Tensor?](repeating: nil, count: model.nodes.count)
        for index in model.nodes.indices {
            let node = model.nodes[index]
            guard let step = plan.steps[index] else { continue }
            var arguments: [Tensor] = []
            arguments.reserveCapacity(node.inputs.count)
            for source in node.inputs {
                guard source >= 0, source < index, let value = outputs[source] else {
                    throw EngineError(node: node.name, problem: "input \(source) is not an earlier node of the model")
                }
                arguments.append(value)
            }
            let result: Tensor
            switch step {
            case .single:
                result = node.operation == .input ? input : try evaluate(node, inputs: arguments)
            case .fused(let fusion):
                result = try fusion.evaluate(model, input: arguments)
            }
            // Release inputs this node was the last to read.
            for source in node.inputs where plan.lastUse[source] == index {
                outputs[source] = nil
            }
            observe?(index, result)
            outputs[plan.resultIndex(of: index)] = result
        }
        guard let output = outputs[model.nodes.count - 1] else {
            throw EngineError(node: model.nodes[model.nodes.count - 1].name, problem: "the last node produced no output")
        }
        return output
    }

    /// One node on the given input tensors, so that other code can walk the graph itself.
    public static func evaluate(_ node: Node, inputs: [Tensor]) throws -> Tensor {
        let expected: Int
        switch node.operation {
        case .input: expected = 1
        case .add: expected = 2
        default: expected = 1
        }
        guard inputs.count == expected else {
            throw EngineError(node: node.name, problem: "takes \(expected) input(s), was given \(inputs.count)")
        }
        do {
            switch node.operation {
            case .input: return inputs[0]
            case .conv(let conv): return try Kernels.conv2d(inputs[0], conv)
            case .linear(let linear): return try Kernels.linear(inputs[0], linear)
            case .batchNorm(let norm): return try Kernels.batchNorm(inputs[0], norm)
            case .relu: return Kernels.relu(inputs[0])
            case .relu6: return Kernels.relu6(inputs[0])
            case .add: return try Kernels.add(inputs[0], inputs[1])
            case .shortcutA(let stride, let padChannels):
                return try Kernels.shortcutA(inputs[0], stride: stride, padChannels: padChannels)
            case .averagePool(let pooling): return try Kernels.averagePool(inputs[0], pooling)
            case .maxPool(let pooling): return try Kernels.maxPool(inputs[0], pooling)
            case .globalAveragePool: return try Kernels.globalAveragePool(inputs[0])
            case .flatten: return try Kernels.flatten(inputs[0])
            }
        } catch let problem as ShapeProblem {
            throw EngineError(node: node.name, problem: problem.problem)
        }
    }
}

/// Which nodes run, which run fused with their successors, and when each output is last read.
struct ExecutionPlan {
    enum Step {
        case single
        case fused(Fusion)
    }

    /// A convolution followed by its batch norm and/or ReLU, or an add followed by its ReLU;
    /// the chain's result is stored as the output of its last node.
    struct Fusion {
        var head: Int
        var batchNorm: Int?
        var relu: Int?

        var last: Int { relu ?? batchNorm ?? head }

        func evaluate(_ model: Model, input: [Tensor]) throws -> Tensor {
            let node = model.nodes[head]
            let clampLower: Float = relu == nil ? -.infinity : 0
            do {
                switch node.operation {
                case .conv(let conv):
                    var scale = [Float](repeating: 1, count: conv.outChannels)
                    var shift = [Float](repeating: 0, count: conv.outChannels)
                    if let batchNorm, case .batchNorm(let norm) = model.nodes[batchNorm].operation {
                        guard norm.channels == conv.outChannels else {
                            throw EngineError(node: model.nodes[batchNorm].name,
                                              problem: "batch norm over \(norm.channels) channels follows a convolution with \(conv.outChannels)")
                        }
                        (scale, shift) = norm.scaleAndShift()
                    }
                    return try Kernels.conv2d(input[0], conv,
                                              epilogue: ChannelEpilogue(scale: scale, shift: shift, lower: clampLower))
                case .add:
                    guard input.count == 2 else {
                        throw EngineError(node: node.name, problem: "takes 2 inputs, was given \(input.count)")
                    }
                    return try Kernels.add(input[0], input[1], thenClampAtZero: true)
                default:
                    return try ForwardPass.evaluate(node, inputs: input)
                }
            } catch let problem as ShapeProblem {
                throw EngineError(node: node.name, problem: problem.problem)
            }
        }
    }

    var steps: [Step?]
    var lastUse: [Int]
    private var storedAt: [Int]

    init(_ model: Model, fuse: Bool) {
        let count = model.nodes.count
        var consumers = [[Int]](repeating: [], count: count)
        for (index, node) in model.nodes.enumerated() {
            for source in node.inputs where source >= 0 && source < count && !consumers[source].contains(index) {
                consumers[source].append(index)
            }
        }
        steps = [Step?](repeating: .single, count: count)
        storedAt = Array(0..<count)
        // The last node's output is the result, so it is never released.
        lastUse = consumers.map { $0.max() ?? count }
        guard fuse else { return }

        /// The single consumer of `index` if it reads only `index` and is the given kind.
        func soleFollower(of index: Int, where matches: (Operation) -> Bool) -> Int? {
            guard consumers[index].count == 1, let next = consumers[index].first,
                  model.nodes[next].inputs == [index], matches(model.nodes[next].operation) else { return nil }
            return next
        }
        for index in 0..<count where steps[index] != nil {
            var fusion: Fusion?
            switch model.nodes[index].operation {
            case .conv:
                let norm = soleFollower(of: index) { if case .batchNorm = $0 { return true } else { return false } }
                let relu = soleFollower(of: norm ?? index) { $0 == .relu }
                if norm != nil || relu != nil { fusion = Fusion(head: index, batchNorm: norm, relu: relu) }
            case .add:
                if let relu = soleFollower(of: index, where: { $0 == .relu }) {
                    fusion = Fusion(head: index, batchNorm: nil, relu: relu)
                }
            default:
                break
            }
            guard let fusion else { continue }
            steps[index] = .fused(fusion)
            for member in [fusion.batchNorm, fusion.relu].compactMap({ $0 }) { steps[member] = nil }
            storedAt[index] = fusion.last
        }
    }

    func resultIndex(of index: Int) -> Int { storedAt[index] }
}
