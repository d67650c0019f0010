import CDNNL

/// A model prepared for repeated whole-model inference with oneDNN.
///
/// Convolutions run as oneDNN primitives with the layouts oneDNN prefers (blocked channels on
/// AVX-512), and activations stay in those layouts from one convolution to the next; batch
/// norm is folded into the convolution, and ReLU and residual sums run as post-ops. Nodes
/// oneDNN does not cover (pooling, option-A shortcut, linear, ...) run on the plain NCHW
/// kernels, with a reorder around them. Primitives are created on the first batch of a given
/// shape and reused. Not for concurrent use: one instance per thread.
public final class CompiledModel {
    public let model: Model
    private let plan: ExecutionPlan
    private let stream: DNNLStream
    private var convolutions: [Int: (inputDims: [Int], primitive: DNNLConvolution)] = [:]
    private var reorders: [ReorderKey: DNNLPrimitive] = [:]
    private var pool = BufferPool()

    private struct ReorderKey: Hashable {
        var node: Int
        var role: Int
        var dims: [Int]
    }

    /// A node output: a buffer in the layout `descriptor` describes, logical shape `dims`.
    private struct Activation {
        var descriptor: dnnl_memory_desc_t
        var dims: [Int]
        var buffer: UnsafeMutableRawPointer
        var bytes: Int
    }

    public init(_ model: Model) throws {
        // Biases of integer layers with a quantized input, rounded to int32 as a runtime stores them.
        let model = BiasQuantization.simulated(model)
        self.model = model
        plan = ExecutionPlan(model, fuse: true)
        stream = try DNNLStream()
    }

    /// Logits (N, classes) for a normalized batch.
    public func logits(_ input: Tensor) throws -> Tensor {
        let output = try run(input)
        guard output.rank == 2, output.shape[0] == input.shape.first else {
            throw EngineError(node: model.nodes.last?.name ?? model.name,
                              problem: "the model's output \(describeShape(output.shape)) is not (batch, classes)")
        }
        return output
    }

    /// The output of the model's last node, as `ForwardPass.run` without an observer computes it.
    public func run(_ input: Tensor) throws -> Tensor {
        guard !model.nodes.isEmpty else { throw EngineError(node: model.name, problem: "the model has no nodes") }
        guard input.rank == 4 else {
            throw EngineError(node: model.nodes[0].name,
                              problem: "expected an image batch (N, C, H, W), got \(describeShape(input.shape))")
        }
        DNNLEngine.applyThreadCount(EngineSettings.threads)
        var outputs = [Activation?](repeating: nil, count: model.nodes.count)
        defer { for case let activation? in outputs { pool.release(activation.buffer, bytes: activation.bytes) } }
        func value(_ source: Int, for index: Int) throws -> Activation {
            guard source >= 0, source < model.nodes.count, let value = outputs[source] else {
                throw EngineError(node: model.nodes[index].name, problem: "input \(source) is not an earlier node of the model")
            }
            return value
        }
        for index in model.nodes.indices {
            guard let step = plan.steps[index] else { continue }
            var result: Activation
            switch step {
            case .single:
                let node = model.nodes[index]
                switch node.operation {
                case .input:
                    result = try plainActivation(input)
                case .conv:
                    result = try convolution(ExecutionPlan.Fusion(head: index), input: try value(node.inputs.first ?? -1, for: index),
                                             residual: nil, outputs: &outputs)
                case .shortcutA, .globalAveragePool:
                    let source = try value(node.inputs.first ?? -1, for: index)
                    if let channelsLast = try channelsLastKernel(node, source) {
                        result = channelsLast
                        break
                    }
                    result = try plainActivation(try ForwardPass.evaluate(node, inputs: [try tensor(from: source, node: index, role: 10)]))
                default:
                    let inputs = try node.inputs.enumerated().map {
                        try tensor(from: try value($0.element, for: index), node: index, role: 10 + $0.offset)
                    }
                    result = try plainActivation(try ForwardPass.evaluate(node, inputs: inputs))
                }
            case .fused(let fusion):
                let head = model.nodes[fusion.head]
                if case .conv = head.operation {
                    result = try convolution(fusion, input: try value(head.inputs.first ?? -1, for: fusion.head),
                                             residual: fusion.residual, outputs: &outputs)
                } else {
                    let inputs = try head.inputs.enumerated().map {
                        try tensor(from: try value($0.element, for: fusion.head), node: index, role: 10 + $0.offset)
                    }
                    result = try plainActivation(try fusion.evaluate(model, inputs: inputs, residual: nil))
                }
            }
            for source in plan.released(after: index) {
                if let released = outputs[source] { pool.release(released.buffer, bytes: released.bytes) }
                outputs[source] = nil
            }
            outputs[index] = result
        }
        guard let last = outputs[model.nodes.count - 1] else {
            throw EngineError(node: model.nodes[model.nodes.count - 1].name, problem: "the last node produced no output")
        }
        return try tensor(from: last, node: model.nodes.count - 1, role: 1)
    }

    /// Runs a fused convolution chain. A residual whose last reader is this chain is summed in
    /// place: its buffer becomes the output buffer.
    private func convolution(_ fusion: ExecutionPlan.Fusion, input: Activation, residual: Int?,
                             outputs: inout [Activation?]) throws -> Activation {
        let node = model.nodes[fusion.head]
        guard case .conv(let conv) = node.operation else {
            throw EngineError(node: node.name, problem: "expected a convolution")
        }
        let primitive: DNNLConvolution
        do {
            primitive = try convolutionPrimitive(fusion, conv: conv, inputDims: input.dims)
        } catch let problem as ShapeProblem {
            throw EngineError(node: node.name, problem: problem.problem)
        }
        let sourceBuffer: UnsafeMutableRawPointer
        var temporary: (UnsafeMutableRawPointer, Int)?
        if DNNLMemory.equal(input.descriptor, primitive.sourceDescriptor) {
            sourceBuffer = input.buffer
        } else {
            let bytes = DNNLMemory.size(primitive.sourceDescriptor)
            sourceBuffer = pool.acquire(bytes)
            temporary = (sourceBuffer, bytes)
            try reorder(input, into: primitive.sourceDescriptor, buffer: sourceBuffer, key: ReorderKey(node: fusion.head, role: 2, dims: input.dims))
        }
        defer { if let temporary { pool.release(temporary.0, bytes: temporary.1) } }

        let bytes = DNNLMemory.size(primitive.destinationDescriptor)
        var destination: UnsafeMutableRawPointer
        if let residual {
            guard let addend = outputs[residual] else {
                throw EngineError(node: model.nodes[fusion.add ?? fusion.head].name, problem: "residual input \(residual) is not available")
            }
            guard addend.dims == primitive.outputDims else {
                throw EngineError(node: model.nodes[fusion.add ?? fusion.head].name,
                                  problem: "cannot add \(describeShape(primitive.outputDims)) and \(describeShape(addend.dims))")
            }
            let lastReader = plan.lastUse[residual] == fusion.last && addend.buffer != input.buffer
            if lastReader && DNNLMemory.equal(addend.descriptor, primitive.destinationDescriptor) {
                destination = addend.buffer
                outputs[residual] = nil
            } else {
                destination = pool.acquire(bytes)
                try reorder(addend, into: primitive.destinationDescriptor, buffer: destination,
                            key: ReorderKey(node: fusion.head, role: 3, dims: addend.dims))
            }
        } else {
            destination = pool.acquire(bytes)
        }
        try stream.execute(primitive.primitive, [
            (DNNLArgument.source, primitive.sourceDescriptor, sourceBuffer),
            (DNNLArgument.weights, primitive.weightsDescriptor, primitive.weights),
            (DNNLArgument.bias, primitive.biasDescriptor, primitive.bias),
            (DNNLArgument.destination, primitive.destinationDescriptor, destination),
        ])
        return Activation(descriptor: primitive.destinationDescriptor, dims: primitive.outputDims, buffer: destination, bytes: bytes)
    }

    private func convolutionPrimitive(_ fusion: ExecutionPlan.Fusion, conv: Conv2D, inputDims: [Int]) throws -> DNNLConvolution {
        if let cached = convolutions[fusion.head], cached.inputDims == inputDims { return cached.primitive }
        let (scale, shift) = try fusion.channelMap(model, conv: conv)
        let perChannel = conv.weight.count / max(1, conv.outChannels)
        var weights = conv.weight.data
        var bias = shift
        for channel in 0..<conv.outChannels {
            for i in 0..<perChannel { weights[channel * perChannel + i] *= scale[channel] }
            bias[channel] += (conv.bias?.data[channel] ?? 0) * scale[channel]
        }
        let primitive = try DNNLConvolution(stream: stream, inputDims: inputDims, conv: conv, weights: weights, bias: bias,
                                            residualSum: fusion.residual != nil, relu: fusion.relu != nil)
        convolutions[fusion.head] = (inputDims, primitive)
        return primitive
    }

    private func reorder(_ activation: Activation, into descriptor: dnnl_memory_desc_t, buffer: UnsafeMutableRawPointer,
                         key: ReorderKey) throws {
        let primitive: DNNLPrimitive
        if let cached = reorders[key] {
            primitive = cached
        } else {
            primitive = try DNNLMemory.reorder(from: activation.descriptor, to: descriptor, engine: stream.engine)
            reorders[key] = primitive
        }
        try stream.execute(primitive, [(DNNLArgument.source, activation.descriptor, activation.buffer),
                                       (DNNLArgument.destination, descriptor, buffer)])
    }

    /// Option-A shortcut and global average pooling directly on channels-last (NHWC) data,
    /// the layout oneDNN picks for these convolutions, so no reorder is needed around them.
    /// Nil when the activation has another layout.
    private func channelsLastKernel(_ node: Node, _ source: Activation) throws -> Activation? {
        guard source.dims.count == 4,
              DNNLMemory.equal(source.descriptor, try DNNLMemory.descriptor(source.dims, tag: dnnl_acdb)) else { return nil }
        let (n, c, h, w) = (source.dims[0], source.dims[1], source.dims[2], source.dims[3])
        let input = source.buffer.assumingMemoryBound(to: Float.self)
        switch node.operation {
        case .shortcutA(let stride, let padChannels):
            guard stride >= 1, padChannels >= 0 else { return nil }
            let (outH, outW, outC) = ((h + stride - 1) / stride, (w + stride - 1) / stride, c + 2 * padChannels)
            let dims = [n, outC, outH, outW]
            let bytes = dims.reduce(1, *) * 4
            let buffer = pool.acquire(bytes)
            let output = buffer.assumingMemoryBound(to: Float.self)
            for pixel in 0..<(n * outH * outW) {
                let (image, y, x) = (pixel / (outH * outW), pixel / outW % outH, pixel % outW)
                let target = output + pixel * outC
                target.update(repeating: 0, count: padChannels)
                (target + padChannels).update(from: input + ((image * h + y * stride) * w + x * stride) * c, count: c)
                (target + padChannels + c).update(repeating: 0, count: padChannels)
            }
            return Activation(descriptor: try DNNLMemory.descriptor(dims, tag: dnnl_acdb), dims: dims, buffer: buffer, bytes: bytes)
        case .globalAveragePool:
            let dims = [n, c, 1, 1]
            let buffer = pool.acquire(n * c * 4)
            let output = buffer.assumingMemoryBound(to: Float.self)
            output.update(repeating: 0, count: n * c)
            for image in 0..<n {
                for pixel in 0..<(h * w) {
                    let row = input + (image * h * w + pixel) * c
                    for channel in 0..<c { output[image * c + channel] += row[channel] }
                }
            }
            let divisor = Float(h * w)
            for i in 0..<(n * c) { output[i] /= divisor }
            // With a 1x1 plane, channels-last and NCHW order coincide.
            return Activation(descriptor: try DNNLMemory.plain(dims), dims: dims, buffer: buffer, bytes: n * c * 4)
        default:
            return nil
        }
    }

    private func plainActivation(_ tensor: Tensor) throws -> Activation {
        let bytes = tensor.count * MemoryLayout<Float>.stride
        let buffer = pool.acquire(bytes)
        tensor.data.withUnsafeBytes { buffer.copyMemory(from: $0.baseAddress!, byteCount: bytes) }
        return Activation(descriptor: try DNNLMemory.plain(tensor.shape), dims: tensor.shape, buffer: buffer, bytes: bytes)
    }

    /// The activation as a plain row-major tensor, reordered out of a blocked layout if needed.
    private func tensor(from activation: Activation, node: Int, role: Int) throws -> Tensor {
        let plain = try DNNLMemory.plain(activation.dims)
        let count = activation.dims.reduce(1, *)
        var data = [Float](repeating: 0, count: count)
        if DNNLMemory.equal(plain, activation.descriptor) {
            data.withUnsafeMutableBytes { $0.baseAddress!.copyMemory(from: activation.buffer, byteCount: count * 4) }
        } else {
            try data.withUnsafeMutableBytes { target in
                try reorder(activation, into: plain, buffer: target.baseAddress!,
                            key: ReorderKey(node: node, role: role, dims: activation.dims))
            }
        }
        return Tensor(shape: activation.dims, data: data)
    }

    deinit { pool.drain() }
}

/// Activation buffers by size, reused across layers and batches: fresh large allocations
/// come from the kernel zero-filled page by page, which costs as much as a small layer.
private struct BufferPool {
    private var free: [Int: [UnsafeMutableRawPointer]] = [:]

    mutating func acquire(_ bytes: Int) -> UnsafeMutableRawPointer {
        if let buffer = free[bytes]?.popLast() { return buffer }
        return UnsafeMutableRawPointer.allocate(byteCount: max(bytes, 64), alignment: 64)
    }

    mutating func release(_ buffer: UnsafeMutableRawPointer, bytes: Int) {
        free[bytes, default: []].append(buffer)
    }

    mutating func drain() {
        for buffers in free.values { for buffer in buffers { buffer.deallocate() } }
        free = [:]
    }
}
