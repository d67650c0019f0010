/// Every operation a graph node can hold, one entry each, read top to bottom: how many inputs it
/// takes, its forward on plain NCHW tensors, its adjoint, and the part it plays in a fused chain.
///
/// The executors look operations up here: `ForwardPass.evaluate` (the plain path, the fallback of
/// `CompiledModel` for nodes oneDNN does not run, and the gradient tape's forward) runs `forward`,
/// `GradientTape` runs `adjoint`, and `ExecutionPlan` fuses by `fusion`. Where an executor has
/// faster kernels of its own for an op (oneDNN convolutions, pooling and post-ops in
/// `CompiledModel`; the batch-norm and clamp adjoints merged into one pass in the tape), the entry
/// here is the definition those kernels are tested against.
///
/// Adding an op touches: its case in `Operation` (Model.swift), its entry here with its kernels
/// (`Kernels/` for the forward, `Autodiff/` for the adjoint), its ONNX mapping (`Import/`,
/// `Export/`), and tests. Nothing else has to know it.
struct OperationRule {
    /// How many tensors `forward` takes (the input node takes the image batch).
    var arity: Arity
    var fusion: FusionRole = .none
    var forward: (_ inputs: [Tensor], _ context: KernelContext) throws -> Tensor
    var adjoint: (_ request: AdjointRequest) throws -> AdjointStep
}

enum Arity: Equatable {
    case exactly(Int)
    /// Any number from one on (concatenation).
    case any

    func accepts(_ count: Int) -> Bool {
        switch self {
        case .exactly(let expected): count == expected
        case .any: count >= 1
        }
    }

    var description: String {
        switch self {
        case .exactly(let expected): "\(expected)"
        case .any: "1 or more"
        }
    }
}

/// The chains the executors fuse: convolution [-> batch norm] [-> sum] [-> clamp], and
/// sum -> clamp. The batch norm folds into the convolution, the sum and clamp run as post-ops.
enum FusionRole: Equatable {
    case convolution
    case batchNorm
    case sum
    /// A clamp to [0, upper]: ReLU (infinity) or ReLU6 (6).
    case clamp(upper: Float)
    case none
}

/// Where a forward runs: with a oneDNN stream, the tape's convolutions run on oneDNN's training
/// primitives (which keep what their backward pass needs); without, on the plain kernels.
struct KernelContext {
    /// The node's name, for errors.
    var node: String
    var stream: DNNLStream? = nil
}

/// What one node's adjoint is given.
struct AdjointRequest {
    var inputs: [Tensor]
    var outputGradient: Tensor
    /// Whether any input needs its gradient.
    var wantInput: Bool
    var wantParameters: Bool
    /// Whether a fake quantizer's step size gets its gradient (LSQ).
    var wantStepSize: Bool
    var stream: DNNLStream?
    /// The batch's own statistics, for a batch norm that normalized with them.
    var batchStatistics: BatchStatistics?
    var node: String
}

/// The gradients of one node's inputs (nil where none is formed) and parameters; `fresh` when the
/// input gradients are new storage that nothing else references, so that sums may go into them.
struct AdjointStep {
    var inputs: [Tensor?]
    var parameters: ParameterGradient? = nil
    var fresh: Bool
}

extension Operation {
    /// The upper bound of a clamp that fuses into a chain (ReLU: infinity, ReLU6: 6); nil for other operations.
    var clampUpperBound: Float? {
        if case .clamp(let upper) = rule.fusion { return upper }
        return nil
    }

    var rule: OperationRule {
        switch self {
        case .input:
            return OperationRule(arity: .exactly(1), forward: { inputs, _ in inputs[0] },
                                 adjoint: { _ in AdjointStep(inputs: [], fresh: true) })

        case .conv(let conv):
            return OperationRule(
                arity: .exactly(1), fusion: .convolution,
                forward: { inputs, context in
                    if let stream = context.stream, inputs[0].rank == 4,
                       let convolution = TrainingConvolutions.convolution(inputDims: inputs[0].shape, conv: conv) {
                        return try convolution.forward(inputs[0], weight: conv.weight, bias: conv.bias, stream: stream)
                    }
                    return try Kernels.conv2d(inputs[0], conv)
                },
                adjoint: { request in
                    let step = try BackwardKernels.conv2d(input: request.inputs[0], conv, outputGradient: request.outputGradient,
                                                          wantInput: request.wantInput, wantParameters: request.wantParameters,
                                                          stream: request.stream)
                    return AdjointStep(inputs: [step.input], parameters: step.parameters, fresh: true)
                })

        case .linear(let layer):
            return OperationRule(
                arity: .exactly(1),
                forward: { inputs, _ in try Kernels.linear(inputs[0], layer) },
                adjoint: { request in
                    let step = BackwardKernels.linear(input: request.inputs[0], layer, outputGradient: request.outputGradient,
                                                      wantInput: request.wantInput, wantParameters: request.wantParameters)
                    return AdjointStep(inputs: [step.input], parameters: step.parameters, fresh: true)
                })

        case .batchNorm(let norm):
            return OperationRule(
                arity: .exactly(1), fusion: .batchNorm,
                forward: { inputs, _ in try Kernels.batchNorm(inputs[0], norm) },
                adjoint: { request in
                    if let statistics = request.batchStatistics {
                        let step = BackwardKernels.batchNormTraining(input: request.inputs[0], norm, statistics: statistics,
                                                                     outputGradient: request.outputGradient)
                        return AdjointStep(inputs: [step.input], parameters: request.wantParameters ? step.parameters : nil, fresh: true)
                    }
                    var gradient = request.outputGradient
                    let parameters = BackwardKernels.batchNormInference(input: request.inputs[0], norm, outputGradient: &gradient,
                                                                        wantParameters: request.wantParameters)
                    return AdjointStep(inputs: [gradient], parameters: parameters, fresh: false)
                })

        case .relu, .relu6:
            let upper: Float = self == .relu6 ? 6 : .infinity
            return OperationRule(
                arity: .exactly(1), fusion: .clamp(upper: upper),
                forward: { inputs, _ in Kernels.clamp(inputs[0], lower: 0, upper: upper) },
                adjoint: { request in
                    var gradient = request.outputGradient
                    BackwardKernels.clamp(input: request.inputs[0], outputGradient: &gradient, lower: 0, upper: upper)
                    return AdjointStep(inputs: [gradient], fresh: false)
                })

        case .add:
            return OperationRule(
                arity: .exactly(2), fusion: .sum,
                forward: { inputs, _ in try Kernels.add(inputs[0], inputs[1]) },
                adjoint: { request in AdjointStep(inputs: [request.outputGradient, request.outputGradient], fresh: false) })

        case .shortcutA(let stride, let padChannels):
            return OperationRule(
                arity: .exactly(1),
                forward: { inputs, _ in try Kernels.shortcutA(inputs[0], stride: stride, padChannels: padChannels) },
                adjoint: { request in
                    AdjointStep(inputs: [BackwardKernels.shortcutA(input: request.inputs[0], stride: stride, padChannels: padChannels,
                                                                   outputGradient: request.outputGradient)], fresh: true)
                })

        case .averagePool(let pooling):
            return OperationRule(
                arity: .exactly(1),
                forward: { inputs, _ in try Kernels.averagePool(inputs[0], pooling) },
                adjoint: { request in
                    AdjointStep(inputs: [BackwardKernels.averagePool(input: request.inputs[0], pooling,
                                                                     outputGradient: request.outputGradient)], fresh: true)
                })

        case .maxPool(let pooling):
            return OperationRule(
                arity: .exactly(1),
                forward: { inputs, _ in try Kernels.maxPool(inputs[0], pooling) },
                adjoint: { request in
                    AdjointStep(inputs: [BackwardKernels.maxPool(input: request.inputs[0], pooling,
                                                                 outputGradient: request.outputGradient)], fresh: true)
                })

        case .globalAveragePool:
            return OperationRule(
                arity: .exactly(1),
                forward: { inputs, _ in try Kernels.globalAveragePool(inputs[0]) },
                adjoint: { request in
                    AdjointStep(inputs: [BackwardKernels.globalAveragePool(input: request.inputs[0],
                                                                           outputGradient: request.outputGradient)], fresh: true)
                })

        case .flatten:
            return OperationRule(
                arity: .exactly(1),
                forward: { inputs, _ in try Kernels.flatten(inputs[0]) },
                adjoint: { request in AdjointStep(inputs: [request.outputGradient.reshaped(request.inputs[0].shape)], fresh: false) })

        case .concat:
            return OperationRule(
                arity: .any,
                forward: { inputs, _ in try Kernels.concat(inputs) },
                adjoint: { request in
                    AdjointStep(inputs: try BackwardKernels.concat(inputs: request.inputs, outputGradient: request.outputGradient),
                                fresh: true)
                })

        case .multiply:
            return OperationRule(
                arity: .exactly(2),
                forward: { inputs, _ in try Kernels.multiply(inputs[0], inputs[1]) },
                adjoint: { request in
                    let step = try BackwardKernels.multiply(request.inputs[0], request.inputs[1], outputGradient: request.outputGradient)
                    return AdjointStep(inputs: [step.0, step.1], fresh: true)
                })

        case .pointwise(let function):
            return OperationRule(
                arity: .exactly(1),
                forward: { inputs, _ in Kernels.pointwise(inputs[0], function) },
                adjoint: { request in
                    AdjointStep(inputs: [BackwardKernels.pointwise(input: request.inputs[0], function,
                                                                   outputGradient: request.outputGradient)], fresh: true)
                })

        case .fakeQuantize(let quantizer):
            return OperationRule(
                arity: .exactly(1),
                forward: { inputs, context in try quantizer.apply(inputs[0], at: context.node) },
                adjoint: { request in
                    // The rounding passes straight through; the parameter gradient is that of the
                    // quantizer's step size, for training its range.
                    let step = try BackwardKernels.straightThrough(input: request.inputs[0], quantizer,
                                                                   outputGradient: request.outputGradient,
                                                                   stepSize: request.wantStepSize, node: request.node)
                    return AdjointStep(inputs: [step.input],
                                       parameters: step.stepSize.map { ParameterGradient(weight: Tensor(shape: [1], data: [$0]), bias: nil) },
                                       fresh: true)
                })
        }
    }
}
