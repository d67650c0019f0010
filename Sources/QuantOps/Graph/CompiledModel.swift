import CDNNL
import Foundation

/// A model prepared for repeated whole-model inference with oneDNN: the one executor that eval,
/// calibration, layer-wise analysis and sensitivity share, so that statistics are gathered on the
/// numerics they predict. A caller that reads intermediate tensors names them (`observing`), and
/// fusion stops only there. When `ConvolutionBackend.current` is im2col + GEMM, the same plan runs
/// on the plain kernels instead (`ForwardPass.runPlain`).
///
/// Convolutions run as oneDNN primitives with the layouts oneDNN prefers (blocked channels on
/// AVX-512), and activations stay in those layouts from one convolution to the next; batch
/// norm is folded into the convolution, and ReLU and residual sums run as post-ops. Max and
/// average pooling run as oneDNN primitives on the same layouts. Other nodes (linear, concat,
/// ...) run on the plain NCHW kernels, with a reorder around them. Primitives are created on the first batch of a given
/// shape and reused. Not for concurrent use: one instance per thread.
///
/// With `Arithmetic.int8`, the convolutions `IntegerPlan` accepts run as oneDNN u8 x s8
/// convolutions whose requantization, ReLU and residual sum are fused; activations between them
/// stay u8. Everything else runs as in float, on dequantized values.
public final class CompiledModel {
    public let model: Model
    public let arithmetic: Arithmetic
    /// Where each layer runs; nil for float arithmetic.
    public let integerPlan: IntegerPlan?
    private let plan: ExecutionPlan
    private let stream: DNNLStream
    private var convolutions: [Int: (inputDims: [Int], primitive: PreparedConvolution)] = [:]
    private var reorders: [ReorderKey: DNNLPrimitive] = [:]
    /// Pooling primitives by node and input shape; nil where oneDNN cannot express the window.
    private var poolings: [ReorderKey: DNNLPooling?] = [:]
    private var pool = BufferPool()

    private struct ReorderKey: Hashable {
        var node: Int
        var role: Int
        var dims: [Int]
    }

    /// A node output: a buffer in the layout `descriptor` describes, logical shape `dims`;
    /// u8 codes on `grid` when the descriptor's type is u8, floats otherwise.
    private struct Activation {
        var descriptor: dnnl_memory_desc_t
        var dims: [Int]
        var buffer: UnsafeMutableRawPointer
        var bytes: Int
        var grid: ByteGrid?
    }

    /// What the primitives were prepared for: the model as given, and the settings they depend
    /// on (Winograd and patch chunks follow the thread count).
    private struct ReuseKey: Equatable {
        var model: Model
        var arithmetic: Arithmetic
        var vnni: Bool
        var threads: Int
        var ownKernels: Bool
        var observing: Set<Int>
        var backend: ConvolutionBackend
    }
    private let reuseKey: ReuseKey

    /// The model an earlier run parked, when it was prepared for this model and these settings;
    /// a new one otherwise. Preparing the primitives (oneDNN's generated code, weights reordered
    /// and packed) takes about a quarter second on EfficientNet-Lite0 at batch 32, 8% of
    /// evaluating 320 images, and a session evaluates the same model again and again. Comparing
    /// models is cheap: unchanged weights share their storage.
    public static func reusing(_ model: Model, arithmetic: Arithmetic = .float) throws -> CompiledModel {
        if let parked = ParkingSlot.shared.take(),
           parked.reuseKey == ReuseKey(model: model, arithmetic: arithmetic, vnni: CPUCapabilities.hasVNNI,
                                       threads: EngineSettings.threads, ownKernels: EngineSettings.ownConvolutionKernels,
                                       observing: [], backend: ConvolutionBackend.current) {
            return parked
        }
        return try CompiledModel(model, arithmetic: arithmetic)
    }

    /// Keeps the primitives and activation buffers for the next `reusing` call (one model is
    /// kept; parking another frees the first). Buffers freed and allocated again would cost a
    /// page fault per 4 KiB on the next run's first batch. Not to be used after parking.
    public func park() {
        ParkingSlot.shared.put(self)
    }

    /// Buffers made for one step (dequantized inputs), released when the step is done.
    private var stepBuffers: [UnsafeMutableRawPointer] = []

    /// Whether runs go through oneDNN, or through the plain kernels because the backend says so.
    private let onOneDNN: Bool
    /// The model as given, for the plain path, which simulates the bias rounding itself.
    private let givenModel: Model

    /// `observing`: the nodes whose own outputs `run` hands to its observer. `vnni` says whether
    /// integer sums may skip the int16 step; it is the CPU's, and only tests that plan for another
    /// CPU set it.
    public init(_ model: Model, arithmetic: Arithmetic = .float, observing: Set<Int> = [],
                vnni: Bool = CPUCapabilities.hasVNNI) throws {
        reuseKey = ReuseKey(model: model, arithmetic: arithmetic, vnni: vnni, threads: EngineSettings.threads,
                            ownKernels: EngineSettings.ownConvolutionKernels, observing: observing,
                            backend: ConvolutionBackend.current)
        onOneDNN = reuseKey.backend == .oneDNN
        if arithmetic == .int8, !onOneDNN {
            throw EngineError(node: model.name, problem: "int8 arithmetic runs on oneDNN, and the convolution backend is \(ConvolutionBackend.current)")
        }
        givenModel = model
        // Biases of integer layers with a quantized input, rounded to int32 as a runtime stores them.
        let model = BiasQuantization.simulated(model)
        self.model = model
        self.arithmetic = arithmetic
        integerPlan = arithmetic == .int8 ? IntegerPlan(model, vnni: vnni) : nil
        plan = ExecutionPlan(model, observing: observing)
        stream = try DNNLStream()
    }

    /// The convolutions that run on qsh's own AVX2 kernels, by node name and kernel
    /// ("winograd"), as prepared for the last batch shape; the others run on oneDNN.
    public var ownKernelConvolutions: [String: String] {
        var names: [String: String] = [:]
        for (index, entry) in convolutions {
            guard case .own(let convolution) = entry.primitive else { continue }
            names[model.nodes[index].name] = convolution is WinogradConvolution ? "winograd" : convolution is PatchConvolution ? "patch" : "\(type(of: convolution))"
        }
        return names
    }

    /// Whether qsh's own AVX2 convolution kernels run on this machine.
    public static var runsOwnKernels: Bool { BlockedConvolutions.enabled }

    /// Logits (N, classes) for a normalized batch.
    public func logits(_ input: Tensor) throws -> Tensor {
        let output = try run(input)
        guard output.rank == 2, output.shape[0] == input.shape.first else {
            throw EngineError(node: model.nodes.last?.name ?? model.name,
                              problem: "the model's output \(describeShape(output.shape)) is not (batch, classes)")
        }
        return output
    }

    /// The output of the model's last node. `observe(index, output)` is called, in order, with
    /// the output of every node the model was compiled to observe, as a plain NCHW float tensor.
    public func run(_ input: Tensor, observe: ((Int, Tensor) -> Void)? = nil) throws -> Tensor {
        guard onOneDNN else { return try ForwardPass.runPlain(givenModel, input: input, plan: plan, observe: observe) }
        try ForwardPass.checkInput(model, input)
        DNNLEngine.applyThreadCount(EngineSettings.threads)
        var outputs = [Activation?](repeating: nil, count: model.nodes.count)
        defer {
            for case let activation? in outputs { pool.release(activation.buffer) }
            releaseStepBuffers()
        }
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
                case .fakeQuantize(let quantizer) where integerPlan != nil && ByteGrid(quantizer) != nil:
                    let source = node.inputs.first ?? -1
                    if integerPlan?.absorbedQuantizers.contains(index) == true, let stored = outputs[source], stored.grid != nil {
                        // The chain before stored its output already rounded onto this grid.
                        result = stored
                        outputs[source] = nil
                    } else {
                        result = try quantized(try value(source, for: index), ByteGrid(quantizer)!, node: index)
                    }
                case .fakeQuantize(let quantizer):
                    let source = try floatValue(try value(node.inputs.first ?? -1, for: index), node: index)
                    result = try fakeQuantized(source, quantizer, node: index)
                case .maxPool(let pooling), .averagePool(let pooling):
                    let source = try floatValue(try value(node.inputs.first ?? -1, for: index), node: index)
                    if let pooled = try pooled(source, pooling, node: index) {
                        result = pooled
                        break
                    }
                    result = try plainActivation(try ForwardPass.evaluate(node, inputs: [try tensor(from: source, node: index, role: 10)]))
                case .shortcutA, .globalAveragePool:
                    var source = try value(node.inputs.first ?? -1, for: index)
                    if case .shortcutA = node.operation, source.grid != nil {
                        source = try channelsLast(source, node: index)
                    } else {
                        source = try floatValue(source, node: index)
                    }
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
            if let observe, plan.observing.contains(index) {
                observe(index, try tensor(from: result, node: index, role: 30))
            }
            releaseStepBuffers()
            for source in plan.released(after: index) {
                if let released = outputs[source] { pool.release(released.buffer) }
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
        let chain = integerPlan?.chains[fusion.head]
        if let chain, input.grid != chain.input {
            throw EngineError(node: node.name, problem: "the integer input is not on the grid the plan expected")
        }
        let input = chain == nil ? try floatValue(input, node: fusion.head) : input
        let primitive: PreparedConvolution
        do {
            primitive = try convolutionPrimitive(fusion, conv: conv, chain: chain, inputDims: input.dims)
        } catch let problem as ShapeProblem {
            throw EngineError(node: node.name, problem: problem.problem)
        }
        let sourceBuffer: UnsafeMutableRawPointer
        if DNNLMemory.equal(input.descriptor, primitive.sourceDescriptor) {
            sourceBuffer = input.buffer
        } else {
            sourceBuffer = stepBuffer(DNNLMemory.size(primitive.sourceDescriptor))
            try reorder(input, into: primitive.sourceDescriptor, buffer: sourceBuffer, key: ReorderKey(node: fusion.head, role: 2, dims: input.dims))
        }

        let bytes = DNNLMemory.size(primitive.destinationDescriptor)
        var destination: UnsafeMutableRawPointer
        if let residual {
            guard let stored = outputs[residual] else {
                throw EngineError(node: model.nodes[fusion.add ?? fusion.head].name, problem: "residual input \(residual) is not available")
            }
            // An integer chain adds u8 codes on their own grid; a float chain adds float values.
            if chain?.output != nil, stored.grid != chain?.residual {
                throw EngineError(node: model.nodes[fusion.add ?? fusion.head].name, problem: "the residual is not on the grid the plan expected")
            }
            let addend = chain?.output != nil ? stored : try floatValue(stored, node: fusion.head)
            guard addend.dims == primitive.outputDims else {
                throw EngineError(node: model.nodes[fusion.add ?? fusion.head].name,
                                  problem: "cannot add \(describeShape(primitive.outputDims)) and \(describeShape(addend.dims))")
            }
            let lastReader = plan.lastUse[residual] == fusion.last && addend.buffer == stored.buffer && addend.buffer != input.buffer
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
        switch primitive {
        case .oneDNN(let primitive):
            try stream.execute(primitive.primitive, [
                (DNNLArgument.source, primitive.sourceDescriptor, sourceBuffer),
                (DNNLArgument.weights, primitive.weightsDescriptor, primitive.weights),
                (DNNLArgument.bias, primitive.biasDescriptor, primitive.bias),
                (DNNLArgument.destination, primitive.destinationDescriptor, destination),
            ])
        case .own(let convolution):
            convolution.run(source: sourceBuffer, destination: destination)
        }
        return Activation(descriptor: primitive.destinationDescriptor, dims: primitive.outputDims, buffer: destination, bytes: bytes,
                          grid: chain?.output)
    }

    private func convolutionPrimitive(_ fusion: ExecutionPlan.Fusion, conv: Conv2D, chain: IntegerChain?,
                                      inputDims: [Int]) throws -> PreparedConvolution {
        if let cached = convolutions[fusion.head], cached.inputDims == inputDims { return cached.primitive }
        let primitive: PreparedConvolution
        if let chain {
            var numerics = ConvolutionNumerics()
            numerics.sourceType = dnnl_u8
            numerics.weightsType = dnnl_s8
            numerics.outputScales = chain.outputScales
            numerics.sourceZeroPoint = chain.input.zeroPoint
            if let output = chain.output {
                numerics.destinationType = dnnl_u8
                numerics.destinationZeroPoint = output.zeroPoint
                if let residual = chain.residual {
                    numerics.postOps.append(.sum(scale: residual.scale / output.scale, zeroPoint: residual.zeroPoint, type: dnnl_u8))
                }
                // The quantizer's clamp, in output steps before the zero point is added; with
                // integer bounds, clamping before rounding equals clamping after.
                // ReLU6's 6 is 6 / scale steps: clamping before rounding equals clamping after, as
                // rounding is monotonic.
                let lower = Float(output.lower - output.zeroPoint)
                let upper = Float(output.upper - output.zeroPoint)
                numerics.postOps.append(.clip(lower: chain.clampUpper != nil ? max(0, lower) : lower,
                                              upper: min(upper, (chain.clampUpper ?? .infinity) / output.scale)))
            } else {
                numerics.postOps = ConvolutionNumerics.float(residualSum: fusion.residual != nil, clampUpper: chain.clampUpper).postOps
            }
            primitive = .oneDNN(try DNNLConvolution(stream: stream, inputDims: inputDims, conv: conv, weights: .int8(chain.codes),
                                                    bias: chain.bias, numerics: numerics))
        } else {
            let (scale, shift) = try fusion.channelMap(model, conv: conv)
            let perChannel = conv.weight.count / max(1, conv.outChannels)
            var weights = conv.weight.data
            var bias = shift
            for channel in 0..<conv.outChannels {
                for i in 0..<perChannel { weights[channel * perChannel + i] *= scale[channel] }
                bias[channel] += (conv.bias?.data[channel] ?? 0) * scale[channel]
            }
            let geometry = try ConvolutionGeometry(input: inputDims, conv: conv)
            if let own = try BlockedConvolutions.make(geometry: geometry, weights: weights, bias: bias,
                                                      residualSum: fusion.residual != nil, clampUpper: fusion.clampUpper) {
                primitive = .own(own)
            } else {
                primitive = .oneDNN(try DNNLConvolution(stream: stream, inputDims: inputDims, conv: conv, weights: .float(weights),
                                                        bias: bias,
                                                        numerics: .float(residualSum: fusion.residual != nil, clampUpper: fusion.clampUpper)))
            }
        }
        convolutions[fusion.head] = (inputDims, primitive)
        return primitive
    }

    /// A buffer that lives until the current step is done.
    private func stepBuffer(_ bytes: Int) -> UnsafeMutableRawPointer {
        let buffer = pool.acquire(bytes)
        stepBuffers.append(buffer)
        return buffer
    }

    private func releaseStepBuffers() {
        for buffer in stepBuffers { pool.release(buffer) }
        stepBuffers.removeAll(keepingCapacity: true)
    }

    /// `activation` in a layout without padding, reordered into plain order if it had some.
    private func dense(_ activation: Activation, node: Int, role: Int) throws -> Activation {
        guard !DNNLMemory.isDense(activation.descriptor, dims: activation.dims) else { return activation }
        let plain = try DNNLMemory.plain(activation.dims, type: activation.descriptor.data_type)
        let bytes = DNNLMemory.size(plain)
        let buffer = stepBuffer(bytes)
        try reorder(activation, into: plain, buffer: buffer, key: ReorderKey(node: node, role: role, dims: activation.dims))
        return Activation(descriptor: plain, dims: activation.dims, buffer: buffer, bytes: bytes, grid: activation.grid)
    }

    /// The float values of an activation: itself, or its u8 codes dequantized (a step buffer).
    private func floatValue(_ activation: Activation, node: Int) throws -> Activation {
        guard let grid = activation.grid else { return activation }
        let source = try dense(activation, node: node, role: 20)
        let count = source.dims.reduce(1, *)
        let bytes = count * 4
        let buffer = stepBuffer(bytes)
        let codes = source.buffer.assumingMemoryBound(to: UInt8.self)
        let values = buffer.assumingMemoryBound(to: Float.self)
        for i in 0..<count { values[i] = grid.value(codes[i]) }
        return Activation(descriptor: DNNLMemory.retyped(source.descriptor, dnnl_f32), dims: source.dims, buffer: buffer,
                          bytes: bytes, grid: nil)
    }

    /// The simulation's rounding (`ActivationQuantizer.apply`, the same arithmetic) on a float
    /// activation in whatever layout oneDNN keeps it: the quantizer treats every value alone, and
    /// blocked layouts pad with zeros, which every grid holds exactly. Saves two reorders per
    /// quantizer.
    private func fakeQuantized(_ source: Activation, _ quantizer: ActivationQuantizer, node: Int) throws -> Activation {
        guard let grid = quantizer.grid() else {
            throw EngineError.uncalibrated(quantizer, node: model.nodes[node].name)
        }
        let count = source.bytes / MemoryLayout<Float>.stride
        let buffer = pool.acquire(source.bytes)
        let values = source.buffer.assumingMemoryBound(to: Float.self)
        let rounded = buffer.assumingMemoryBound(to: Float.self)
        let scale = grid.scales[0], zeroPoint = grid.zeroPoints[0]
        let lower = Float(grid.levels.lowerBound) - zeroPoint, upper = Float(grid.levels.upperBound) - zeroPoint
        let chunk = 1 << 14
        parallelFor((count + chunk - 1) / chunk) { _, part in
            for i in part * chunk ..< min(count, (part + 1) * chunk) {
                rounded[i] = scale > 0 ? scale * ActivationQuantizer.roundHalfEven(min(max(values[i] / scale, lower), upper)) : 0
            }
        }
        return Activation(descriptor: source.descriptor, dims: source.dims, buffer: buffer, bytes: source.bytes, grid: nil)
    }

    /// The u8 codes of a float activation on `grid`, in its layout.
    private func quantized(_ activation: Activation, _ grid: ByteGrid, node: Int) throws -> Activation {
        let source = try dense(try floatValue(activation, node: node), node: node, role: 21)
        let count = source.dims.reduce(1, *)
        let buffer = pool.acquire(max(count, 1))
        let values = source.buffer.assumingMemoryBound(to: Float.self)
        let codes = buffer.assumingMemoryBound(to: UInt8.self)
        for i in 0..<count { codes[i] = grid.code(values[i]) }
        return Activation(descriptor: DNNLMemory.retyped(source.descriptor, dnnl_u8), dims: source.dims, buffer: buffer,
                          bytes: max(count, 1), grid: grid)
    }

    /// The activation in channels-last (NHWC) order, reordered into a step buffer if needed.
    private func channelsLast(_ activation: Activation, node: Int) throws -> Activation {
        let target = try DNNLMemory.descriptor(activation.dims, tag: dnnl_acdb, type: activation.descriptor.data_type)
        guard activation.dims.count == 4, !DNNLMemory.equal(activation.descriptor, target) else { return activation }
        let bytes = DNNLMemory.size(target)
        let buffer = stepBuffer(bytes)
        try reorder(activation, into: target, buffer: buffer, key: ReorderKey(node: node, role: 22, dims: activation.dims))
        return Activation(descriptor: target, dims: activation.dims, buffer: buffer, bytes: bytes, grid: activation.grid)
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

    /// Max or average pooling by oneDNN on the source's own layout; nil when oneDNN cannot
    /// express the window.
    private func pooled(_ source: Activation, _ pooling: Pooling, node: Int) throws -> Activation? {
        let key = ReorderKey(node: node, role: 0, dims: source.dims)
        let primitive: DNNLPooling?
        if let cached = poolings[key], cached.map({ DNNLMemory.equal($0.sourceDescriptor, source.descriptor) }) ?? true {
            primitive = cached
        } else {
            var isMax = false
            if case .maxPool = model.nodes[node].operation { isMax = true }
            primitive = try DNNLPooling(source: source.descriptor, dims: source.dims, pooling: pooling, isMax: isMax,
                                        engine: stream.engine)
            poolings[key] = primitive
        }
        guard let primitive else { return nil }
        let bytes = DNNLMemory.size(primitive.destinationDescriptor)
        let buffer = pool.acquire(bytes)
        try stream.execute(primitive.primitive, [(DNNLArgument.source, source.descriptor, source.buffer),
                                                 (DNNLArgument.destination, primitive.destinationDescriptor, buffer)])
        return Activation(descriptor: primitive.destinationDescriptor, dims: primitive.outputDims, buffer: buffer,
                          bytes: bytes, grid: nil)
    }

    /// Option-A shortcut and global average pooling directly on channels-last (NHWC) data,
    /// the layout oneDNN picks for these convolutions, so no reorder is needed around them.
    /// The shortcut also moves u8 codes, padding with the code of 0. Nil when the activation
    /// has another layout.
    private func channelsLastKernel(_ node: Node, _ source: Activation) throws -> Activation? {
        let type = source.descriptor.data_type
        guard source.dims.count == 4, type == dnnl_f32 || (type == dnnl_u8 && source.grid != nil),
              DNNLMemory.equal(source.descriptor, try DNNLMemory.descriptor(source.dims, tag: dnnl_acdb, type: type)) else { return nil }
        let (n, c, h, w) = (source.dims[0], source.dims[1], source.dims[2], source.dims[3])
        switch node.operation {
        case .shortcutA(let stride, let padChannels):
            guard stride >= 1, padChannels >= 0 else { return nil }
            let (outH, outW, outC) = ((h + stride - 1) / stride, (w + stride - 1) / stride, c + 2 * padChannels)
            let dims = [n, outC, outH, outW]
            let elementBytes = type == dnnl_u8 ? 1 : 4
            let bytes = dims.reduce(1, *) * elementBytes
            let buffer = pool.acquire(bytes)
            func copy<Element>(_: Element.Type, padding: Element) {
                let input = source.buffer.assumingMemoryBound(to: Element.self)
                let output = buffer.assumingMemoryBound(to: Element.self)
                for pixel in 0..<(n * outH * outW) {
                    let (image, y, x) = (pixel / (outH * outW), pixel / outW % outH, pixel % outW)
                    let target = output + pixel * outC
                    target.update(repeating: padding, count: padChannels)
                    (target + padChannels).update(from: input + ((image * h + y * stride) * w + x * stride) * c, count: c)
                    (target + padChannels + c).update(repeating: padding, count: padChannels)
                }
            }
            if let grid = source.grid {
                copy(UInt8.self, padding: UInt8(truncatingIfNeeded: grid.zeroPoint))
            } else {
                copy(Float.self, padding: 0)
            }
            return Activation(descriptor: try DNNLMemory.descriptor(dims, tag: dnnl_acdb, type: type), dims: dims, buffer: buffer,
                              bytes: bytes, grid: source.grid)
        case .globalAveragePool:
            guard type == dnnl_f32 else { return nil }
            let input = source.buffer.assumingMemoryBound(to: Float.self)
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
            return Activation(descriptor: try DNNLMemory.plain(dims), dims: dims, buffer: buffer, bytes: n * c * 4, grid: nil)
        default:
            return nil
        }
    }

    private func plainActivation(_ tensor: Tensor) throws -> Activation {
        let bytes = tensor.count * MemoryLayout<Float>.stride
        let buffer = pool.acquire(bytes)
        tensor.data.withUnsafeBytes { buffer.copyMemory(from: $0.baseAddress!, byteCount: bytes) }
        return Activation(descriptor: try DNNLMemory.plain(tensor.shape), dims: tensor.shape, buffer: buffer, bytes: bytes, grid: nil)
    }

    /// The activation as a plain row-major tensor, reordered out of a blocked layout if needed.
    private func tensor(from activation: Activation, node: Int, role: Int) throws -> Tensor {
        let activation = try floatValue(activation, node: node)
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

/// Holds the one parked compiled model; a taker removes it, so no two runs share one.
private final class ParkingSlot: @unchecked Sendable {
    static let shared = ParkingSlot()
    private let lock = NSLock()
    private var parked: CompiledModel?

    func take() -> CompiledModel? {
        lock.lock()
        defer { lock.unlock() }
        let taken = parked
        parked = nil
        return taken
    }

    func put(_ compiled: CompiledModel) {
        lock.lock()
        parked = compiled
        lock.unlock()
    }
}

/// A convolution ready to run: a oneDNN primitive, or one of qsh's own AVX2 kernels.
private enum PreparedConvolution {
    case oneDNN(DNNLConvolution)
    case own(BlockedConvolution)

    var sourceDescriptor: dnnl_memory_desc_t {
        switch self {
        case .oneDNN(let primitive): primitive.sourceDescriptor
        case .own(let convolution): convolution.sourceDescriptor
        }
    }

    var destinationDescriptor: dnnl_memory_desc_t {
        switch self {
        case .oneDNN(let primitive): primitive.destinationDescriptor
        case .own(let convolution): convolution.destinationDescriptor
        }
    }

    var outputDims: [Int] {
        switch self {
        case .oneDNN(let primitive): primitive.outputDims
        case .own(let convolution): convolution.outputDims
        }
    }
}

/// Activation buffers reused across layers and batches: fresh large allocations come from the
/// kernel zero-filled page by page, which costs as much as a small layer. A request takes the
/// smallest free buffer that holds it (best fit), so that what a batch allocates stays near its
/// peak of live activations instead of one buffer per distinct size: EfficientNet-Lite0 at
/// batch 32 allocates 353 MB instead of 493 MB, whose first touches slowed a session's first
/// batch.
struct BufferPool {
    /// Free buffers, smallest capacity first.
    private var free: [(capacity: Int, buffer: UnsafeMutableRawPointer)] = []
    private var capacities: [UnsafeMutableRawPointer: Int] = [:]

    mutating func acquire(_ bytes: Int) -> UnsafeMutableRawPointer {
        let needed = max(bytes, 64)
        if let index = free.firstIndex(where: { $0.capacity >= needed }) {
            return free.remove(at: index).buffer
        }
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: needed, alignment: 64)
        capacities[buffer] = needed
        return buffer
    }

    mutating func release(_ buffer: UnsafeMutableRawPointer) {
        guard let capacity = capacities[buffer] else { preconditionFailure("a buffer the pool did not make") }
        let index = free.firstIndex(where: { $0.capacity >= capacity }) ?? free.count
        free.insert((capacity, buffer), at: index)
    }

    mutating func drain() {
        for (buffer, _) in capacities { buffer.deallocate() }
        free = []
        capacities = [:]
    }
}
