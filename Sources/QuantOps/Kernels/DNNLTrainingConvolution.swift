import CDNNL
import Foundation

/// oneDNN argument indices of the backward passes (C macros that do not import into Swift).
enum DNNLGradientArgument {
    static let sourceGradient: Int32 = 129
    static let destinationGradient: Int32 = 145
    static let weightsGradient: Int32 = 161
}

/// A convolution of one geometry with oneDNN's forward-training, backward-data and
/// backward-weights primitives, for the gradient tape.
///
/// Tensors stay plain NCHW outside; inside, oneDNN works on the blocked layouts it picks, and
/// each call reorders at its boundaries (measured at a few percent of the convolution itself,
/// against 2-3x for the blocked kernels over im2col + GEMM). Weights are passed on every call,
/// since training changes them between steps; their reorder is small. The backward primitives
/// are created on first use, so a forward-only tape never compiles them.
///
/// Instances are shared by every tape of the process (`TrainingConvolutions`); oneDNN
/// primitives may run concurrently, each call brings its own stream.
final class DNNLTrainingConvolution: @unchecked Sendable {
    struct Key: Hashable {
        var inputDims: [Int]
        var weightDims: [Int]
        var geometry: [Int]
        var hasBias: Bool

        init(inputDims: [Int], conv: Conv2D) {
            self.inputDims = inputDims
            weightDims = conv.weight.shape
            geometry = [conv.stride.0, conv.stride.1, conv.padding.0, conv.padding.1, conv.trailingPadding.0, conv.trailingPadding.1,
                        conv.dilation.0, conv.dilation.1, conv.groups]
            hasBias = conv.bias != nil
        }
    }

    let geometry: ConvolutionGeometry
    let outputDims: [Int]
    private let engine: DNNLEngine
    private let plainSource: dnnl_memory_desc_t
    private let plainDestination: dnnl_memory_desc_t
    private let plainWeights: dnnl_memory_desc_t
    private let biasDescriptor: dnnl_memory_desc_t?
    private let forwardDescriptor: dnnl_primitive_desc_t
    private let forward: Stage
    private let convolution: ConvolutionDescriptors
    private let lock = NSLock()
    private var backwardDataStage: Stage?
    private var backwardWeightsStage: Stage?

    /// A primitive with the layouts it runs on, and the reorders between those and plain NCHW
    /// (nil where the layouts coincide).
    private struct Stage {
        var primitive: DNNLPrimitive
        /// The data input (source or destination gradient), the weights, the result.
        var input: dnnl_memory_desc_t
        var weights: dnnl_memory_desc_t
        var output: dnnl_memory_desc_t
        var inputFromPlain: DNNLPrimitive?
        var weightsFromPlain: DNNLPrimitive?
        var outputToPlain: DNNLPrimitive?
        /// Backward weights only: the destination gradient's layout and its reorder.
        var secondInput: dnnl_memory_desc_t?
        var secondInputFromPlain: DNNLPrimitive?
    }

    /// The shape arguments shared by the three operation descriptors.
    private struct ConvolutionDescriptors {
        var strides: [Int64]
        var dilates: [Int64]
        var padLeft: [Int64]
        var padRight: [Int64]
        var sourceDims: [Int]
        var weightDims: [Int]
        var destinationDims: [Int]
    }

    init(inputDims: [Int], conv: Conv2D) throws {
        let g = try ConvolutionGeometry(input: inputDims, conv: conv)
        geometry = g
        engine = try DNNLEngine.shared.get()
        outputDims = [g.batch, g.outChannels, g.outHeight, g.outWidth]
        let weightDims = conv.groups == 1 ? conv.weight.shape : [conv.groups, g.outChannelsPerGroup] + conv.weight.shape.dropFirst()
        convolution = ConvolutionDescriptors(
            strides: [Int64(g.strideY), Int64(g.strideX)],
            // oneDNN counts dilation from 0 (no gaps), PyTorch from 1.
            dilates: [Int64(g.dilationY - 1), Int64(g.dilationX - 1)],
            padLeft: [Int64(g.padY), Int64(g.padX)],
            // Right padding that makes oneDNN's output size equal PyTorch's floor division.
            padRight: [Int64((g.outHeight - 1) * g.strideY + (g.kernelHeight - 1) * g.dilationY + 1 - g.height - g.padY),
                       Int64((g.outWidth - 1) * g.strideX + (g.kernelWidth - 1) * g.dilationX + 1 - g.width - g.padX)],
            sourceDims: inputDims, weightDims: weightDims, destinationDims: outputDims)
        plainSource = try DNNLMemory.plain(inputDims)
        plainDestination = try DNNLMemory.plain(outputDims)
        plainWeights = try DNNLMemory.plain(weightDims)
        biasDescriptor = conv.bias == nil ? nil : try DNNLMemory.plain([g.outChannels])

        var source = try DNNLMemory.descriptor(inputDims, tag: dnnl_format_tag_any)
        var weights = try DNNLMemory.descriptor(weightDims, tag: dnnl_format_tag_any)
        var destination = try DNNLMemory.descriptor(outputDims, tag: dnnl_format_tag_any)
        var bias = biasDescriptor ?? dnnl_memory_desc_t()
        var descriptor = dnnl_convolution_desc_t()
        let c = convolution
        let hasBias = biasDescriptor != nil
        try withUnsafePointer(to: &bias) { biasPointer in
            try dnnlCheck(dnnl_dilated_convolution_forward_desc_init(&descriptor, dnnl_forward_training, dnnl_convolution_direct,
                                                                     &source, &weights, hasBias ? biasPointer : nil,
                                                                     &destination, c.strides, c.dilates, c.padLeft, c.padRight),
                          "dnnl_dilated_convolution_forward_desc_init")
        }
        forwardDescriptor = try Self.primitiveDescriptor(&descriptor, engine: engine, hint: nil)
        do {
            let pd = forwardDescriptor
            let input = dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0).pointee
            let weightsLayout = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0).pointee
            let output = dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0).pointee
            forward = Stage(primitive: try DNNLPrimitive(descriptor: pd), input: input, weights: weightsLayout, output: output,
                            inputFromPlain: try Self.reorder(plainSource, input, engine),
                            weightsFromPlain: try Self.reorder(plainWeights, weightsLayout, engine),
                            outputToPlain: try Self.reorder(output, plainDestination, engine))
        } catch {
            dnnl_primitive_desc_destroy(forwardDescriptor)
            throw error
        }
    }

    deinit { dnnl_primitive_desc_destroy(forwardDescriptor) }

    private static func primitiveDescriptor(_ descriptor: inout dnnl_convolution_desc_t, engine: DNNLEngine,
                                            hint: dnnl_primitive_desc_t?) throws -> dnnl_primitive_desc_t {
        var primitiveDescriptor: dnnl_primitive_desc_t?
        try withUnsafePointer(to: &descriptor) { pointer in
            try dnnlCheck(dnnl_primitive_desc_create(&primitiveDescriptor, pointer, nil, engine.handle, hint),
                          "dnnl_primitive_desc_create(convolution)")
        }
        guard let primitiveDescriptor else { throw DNNLError(call: "dnnl_primitive_desc_create(convolution)", status: -1) }
        return primitiveDescriptor
    }

    private static func reorder(_ from: dnnl_memory_desc_t, _ to: dnnl_memory_desc_t, _ engine: DNNLEngine) throws -> DNNLPrimitive? {
        DNNLMemory.equal(from, to) ? nil : try DNNLMemory.reorder(from: from, to: to, engine: engine)
    }

    private func backwardData() throws -> Stage {
        lock.lock()
        defer { lock.unlock() }
        if let backwardDataStage { return backwardDataStage }
        let c = convolution
        var sourceGradient = try DNNLMemory.descriptor(c.sourceDims, tag: dnnl_format_tag_any)
        var weights = try DNNLMemory.descriptor(c.weightDims, tag: dnnl_format_tag_any)
        var destinationGradient = try DNNLMemory.descriptor(c.destinationDims, tag: dnnl_format_tag_any)
        var descriptor = dnnl_convolution_desc_t()
        try dnnlCheck(dnnl_dilated_convolution_backward_data_desc_init(&descriptor, dnnl_convolution_direct, &sourceGradient,
                                                                       &weights, &destinationGradient, c.strides, c.dilates,
                                                                       c.padLeft, c.padRight),
                      "dnnl_dilated_convolution_backward_data_desc_init")
        let pd = try Self.primitiveDescriptor(&descriptor, engine: engine, hint: forwardDescriptor)
        defer { dnnl_primitive_desc_destroy(pd) }
        let input = dnnl_primitive_desc_query_md(pd, dnnl_query_diff_dst_md, 0).pointee
        let weightsLayout = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0).pointee
        let output = dnnl_primitive_desc_query_md(pd, dnnl_query_diff_src_md, 0).pointee
        let stage = Stage(primitive: try DNNLPrimitive(descriptor: pd), input: input, weights: weightsLayout, output: output,
                          inputFromPlain: try Self.reorder(plainDestination, input, engine),
                          weightsFromPlain: try Self.reorder(plainWeights, weightsLayout, engine),
                          outputToPlain: try Self.reorder(output, plainSource, engine))
        backwardDataStage = stage
        return stage
    }

    private func backwardWeights() throws -> Stage {
        lock.lock()
        defer { lock.unlock() }
        if let backwardWeightsStage { return backwardWeightsStage }
        let c = convolution
        var source = try DNNLMemory.descriptor(c.sourceDims, tag: dnnl_format_tag_any)
        var weightsGradient = try DNNLMemory.descriptor(c.weightDims, tag: dnnl_format_tag_any)
        var destinationGradient = try DNNLMemory.descriptor(c.destinationDims, tag: dnnl_format_tag_any)
        var descriptor = dnnl_convolution_desc_t()
        try dnnlCheck(dnnl_dilated_convolution_backward_weights_desc_init(&descriptor, dnnl_convolution_direct, &source,
                                                                          &weightsGradient, nil, &destinationGradient,
                                                                          c.strides, c.dilates, c.padLeft, c.padRight),
                      "dnnl_dilated_convolution_backward_weights_desc_init")
        let pd = try Self.primitiveDescriptor(&descriptor, engine: engine, hint: forwardDescriptor)
        defer { dnnl_primitive_desc_destroy(pd) }
        let input = dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0).pointee
        let gradient = dnnl_primitive_desc_query_md(pd, dnnl_query_diff_dst_md, 0).pointee
        let output = dnnl_primitive_desc_query_md(pd, dnnl_query_diff_weights_md, 0).pointee
        let stage = Stage(primitive: try DNNLPrimitive(descriptor: pd), input: input, weights: output, output: output,
                          inputFromPlain: try Self.reorder(plainSource, input, engine), weightsFromPlain: nil,
                          outputToPlain: try Self.reorder(output, plainWeights, engine),
                          secondInput: gradient, secondInputFromPlain: try Self.reorder(plainDestination, gradient, engine))
        backwardWeightsStage = stage
        return stage
    }

    /// The convolution of `input` (NCHW) with `weight` and `bias`, as an NCHW tensor.
    func forward(_ input: Tensor, weight: Tensor, bias: Tensor?, stream: DNNLStream) throws -> Tensor {
        let stage = forward
        return try input.data.withUnsafeBufferPointer { x in
            try weight.data.withUnsafeBufferPointer { w in
                try Self.staged(stage.input, from: plainSource, x.baseAddress!, stage.inputFromPlain, stream) { source in
                    try Self.staged(stage.weights, from: plainWeights, w.baseAddress!, stage.weightsFromPlain, stream) { weights in
                        try Self.produce(outputDims, layout: stage.output, toPlain: stage.outputToPlain, plain: plainDestination,
                                         stream: stream) { destination in
                            var arguments = [(DNNLArgument.source, stage.input, source),
                                             (DNNLArgument.weights, stage.weights, weights),
                                             (DNNLArgument.destination, stage.output, destination)]
                            if let bias, let biasDescriptor {
                                try bias.data.withUnsafeBufferPointer { b in
                                    arguments.append((DNNLArgument.bias, biasDescriptor, UnsafeMutableRawPointer(mutating: b.baseAddress!)))
                                    try stream.execute(stage.primitive, arguments)
                                }
                            } else {
                                try stream.execute(stage.primitive, arguments)
                            }
                        }
                    }
                }
            }
        }
    }

    /// The gradients with respect to the input (NCHW, when `wantInput`) and the weights (in the
    /// layer's (O, I/G, KH, KW) shape, when `weightShape` is given) for `outputGradient`
    /// (NCHW). The output gradient is reordered once where both primitives read the same layout.
    func backward(input: Tensor, outputGradient: Tensor, weight: Tensor, wantInput: Bool, weightShape: [Int]?,
                  stream: DNNLStream) throws -> (input: Tensor?, weight: Tensor?) {
        let data = wantInput ? try backwardData() : nil
        let weights = weightShape == nil ? nil : try backwardWeights()
        return try outputGradient.data.withUnsafeBufferPointer { dy in
            let plainGradient = dy.baseAddress!
            func inputGradient(_ stage: Stage, gradient: UnsafeMutableRawPointer) throws -> Tensor {
                try weight.data.withUnsafeBufferPointer { w in
                    try Self.staged(stage.weights, from: plainWeights, w.baseAddress!, stage.weightsFromPlain, stream) { weights in
                        try Self.produce(geometry.inShape, layout: stage.output, toPlain: stage.outputToPlain, plain: plainSource,
                                         stream: stream) { sourceGradient in
                            try stream.execute(stage.primitive, [(DNNLGradientArgument.destinationGradient, stage.input, gradient),
                                                                 (DNNLArgument.weights, stage.weights, weights),
                                                                 (DNNLGradientArgument.sourceGradient, stage.output, sourceGradient)])
                        }
                    }
                }
            }
            func weightGradient(_ stage: Stage, shape: [Int], gradient: UnsafeMutableRawPointer?) throws -> Tensor {
                let gradientLayout = stage.secondInput ?? plainDestination
                return try input.data.withUnsafeBufferPointer { x in
                    try Self.staged(stage.input, from: plainSource, x.baseAddress!, stage.inputFromPlain, stream) { source in
                        let run = { (gradient: UnsafeMutableRawPointer) in
                            try Self.produce(shape, layout: stage.output, toPlain: stage.outputToPlain, plain: self.plainWeights,
                                             stream: stream) { weightsGradient in
                                try stream.execute(stage.primitive, [(DNNLArgument.source, stage.input, source),
                                                                     (DNNLGradientArgument.destinationGradient, gradientLayout, gradient),
                                                                     (DNNLGradientArgument.weightsGradient, stage.output, weightsGradient)])
                            }
                        }
                        if let gradient { return try run(gradient) }
                        return try Self.staged(gradientLayout, from: plainDestination, plainGradient, stage.secondInputFromPlain,
                                               stream, run)
                    }
                }
            }
            guard let data else {
                guard let weights, let weightShape else { return (nil, nil) }
                return (nil, try weightGradient(weights, shape: weightShape, gradient: nil))
            }
            return try Self.staged(data.input, from: plainDestination, plainGradient, data.inputFromPlain, stream) { gradient in
                let inputResult = try inputGradient(data, gradient: gradient)
                guard let weights, let weightShape else { return (inputResult, nil) }
                let shared = DNNLMemory.equal(weights.secondInput ?? plainDestination, data.input)
                return (inputResult, try weightGradient(weights, shape: weightShape, gradient: shared ? gradient : nil))
            }
        }
    }

    /// Calls `body` with `plain` itself when the layouts coincide, else with a temporary
    /// buffer holding `plain` reordered into `layout`.
    private static func staged<Result>(_ layout: dnnl_memory_desc_t, from plainLayout: dnnl_memory_desc_t,
                                       _ plain: UnsafePointer<Float>, _ reorder: DNNLPrimitive?, _ stream: DNNLStream,
                                       _ body: (UnsafeMutableRawPointer) throws -> Result) throws -> Result {
        // oneDNN only reads its inputs; the mutable pointer is what its memory objects take.
        let source = UnsafeMutableRawPointer(mutating: plain)
        guard let reorder else { return try body(source) }
        let bytes = DNNLMemory.size(layout)
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: max(bytes, 64), alignment: 64)
        defer { buffer.deallocate() }
        try stream.execute(reorder, [(DNNLArgument.source, plainLayout, source), (DNNLArgument.destination, layout, buffer)])
        return try body(buffer)
    }

    /// A plain tensor of shape `dims` that `body` fills through a buffer in `layout`.
    private static func produce(_ dims: [Int], layout: dnnl_memory_desc_t, toPlain reorder: DNNLPrimitive?,
                                plain: dnnl_memory_desc_t, stream: DNNLStream,
                                _ body: (UnsafeMutableRawPointer) throws -> Void) throws -> Tensor {
        let count = dims.reduce(1, *)
        let data = try [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
            let target = UnsafeMutableRawPointer(buffer.baseAddress!)
            if let reorder {
                let bytes = DNNLMemory.size(layout)
                let scratch = UnsafeMutableRawPointer.allocate(byteCount: max(bytes, 64), alignment: 64)
                defer { scratch.deallocate() }
                try body(scratch)
                try stream.execute(reorder, [(DNNLArgument.source, layout, scratch), (DNNLArgument.destination, plain, target)])
            } else {
                try body(target)
            }
            initialized = count
        }
        return Tensor(shape: dims, data: data)
    }
}

extension ConvolutionGeometry {
    var inShape: [Int] { [batch, inChannels, height, width] }
}

/// The process's training convolutions by geometry, so that every step of a training or
/// distillation loop reuses the primitives of the first.
enum TrainingConvolutions {
    private static let cache = LockedValue<[DNNLTrainingConvolution.Key: DNNLTrainingConvolution]>([:])
    /// Geometries oneDNN could not build; they run on the im2col kernels.
    private static let unsupported = LockedValue<Set<DNNLTrainingConvolution.Key>>([])

    /// The primitives for `conv` on inputs of shape `inputDims`, or nil when the GEMM kernels
    /// are selected or oneDNN cannot run this geometry.
    static func convolution(inputDims: [Int], conv: Conv2D) -> DNNLTrainingConvolution? {
        guard ConvolutionBackend.current == .oneDNN else { return nil }
        let key = DNNLTrainingConvolution.Key(inputDims: inputDims, conv: conv)
        if let cached = cache.withLock({ $0[key] }) { return cached }
        if unsupported.withLock({ $0.contains(key) }) { return nil }
        guard let created = try? DNNLTrainingConvolution(inputDims: inputDims, conv: conv) else {
            unsupported.withLock { _ = $0.insert(key) }
            return nil
        }
        return cache.withLock { cache in
            if let existing = cache[key] { return existing }
            cache[key] = created
            return created
        }
    }
}
