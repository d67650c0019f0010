import CDNNL
import Foundation

/// A oneDNN call that failed; names the call so a missing CPU feature or a bad shape is traceable.
public struct DNNLError: Error, CustomStringConvertible {
    public var call: String
    public var status: Int

    public var description: String {
        "oneDNN \(call) failed with status \(status); the convolution backend cannot run this layer (set ConvolutionBackend to im2colGEMM to avoid oneDNN)"
    }
}

@inline(__always)
func dnnlCheck(_ status: dnnl_status_t, _ call: String) throws {
    guard status == dnnl_success else { throw DNNLError(call: call, status: Int(status.rawValue)) }
}

/// oneDNN argument indices (C macros that do not import into Swift).
enum DNNLArgument {
    static let source: Int32 = 1
    static let destination: Int32 = 17
    static let weights: Int32 = 33
    static let bias: Int32 = 41
}

/// The CPU engine, created once per process; oneDNN engines are safe to share between threads.
final class DNNLEngine: @unchecked Sendable {
    let handle: dnnl_engine_t

    static let shared: Result<DNNLEngine, DNNLError> = {
        var engine: dnnl_engine_t?
        let status = dnnl_engine_create(&engine, dnnl_cpu, 0)
        guard status == dnnl_success, let engine else {
            return .failure(DNNLError(call: "dnnl_engine_create", status: Int(status.rawValue)))
        }
        return .success(DNNLEngine(handle: engine))
    }()

    private init(handle: dnnl_engine_t) { self.handle = handle }

    /// oneDNN runs on OpenMP; its worker count follows `EngineSettings.threads`. The setter is
    /// looked up at run time because the OpenMP runtime comes in with libdnnl, not with a header.
    static func applyThreadCount(_ threads: Int) {
        typealias SetThreads = @convention(c) (Int32) -> Void
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "omp_set_num_threads") else { return }
        unsafeBitCast(symbol, to: SetThreads.self)(Int32(threads))
    }
}

/// A stream plus the primitives one `CompiledModel` created on it; used from one thread at a time.
final class DNNLStream {
    let engine: DNNLEngine
    let handle: dnnl_stream_t

    init() throws {
        engine = try DNNLEngine.shared.get()
        var stream: dnnl_stream_t?
        try dnnlCheck(dnnl_stream_create(&stream, engine.handle, dnnl_stream_default_flags.rawValue), "dnnl_stream_create")
        guard let stream else { throw DNNLError(call: "dnnl_stream_create", status: -1) }
        handle = stream
    }

    deinit { dnnl_stream_destroy(handle) }

    /// Runs `primitive` on memories wrapping the given buffers, and waits for it.
    func execute(_ primitive: DNNLPrimitive, _ arguments: [(Int32, dnnl_memory_desc_t, UnsafeMutableRawPointer)]) throws {
        var memories: [dnnl_memory_t?] = []
        defer { for memory in memories { dnnl_memory_destroy(memory) } }
        var execArguments: [dnnl_exec_arg_t] = []
        for (index, descriptor, pointer) in arguments {
            var memory: dnnl_memory_t?
            var descriptor = descriptor
            try dnnlCheck(dnnl_memory_create(&memory, &descriptor, engine.handle, pointer), "dnnl_memory_create")
            memories.append(memory)
            execArguments.append(dnnl_exec_arg_t(arg: index, memory: memory))
        }
        try dnnlCheck(dnnl_primitive_execute(primitive.handle, handle, Int32(execArguments.count), execArguments),
                      "dnnl_primitive_execute")
        try dnnlCheck(dnnl_stream_wait(handle), "dnnl_stream_wait")
    }
}

final class DNNLPrimitive {
    let handle: dnnl_primitive_t

    init(descriptor: dnnl_primitive_desc_t) throws {
        var primitive: dnnl_primitive_t?
        try dnnlCheck(dnnl_primitive_create(&primitive, descriptor), "dnnl_primitive_create")
        guard let primitive else { throw DNNLError(call: "dnnl_primitive_create", status: -1) }
        handle = primitive
    }

    deinit { dnnl_primitive_destroy(handle) }
}

enum DNNLMemory {
    static func descriptor(_ dims: [Int], tag: dnnl_format_tag_t, type: dnnl_data_type_t = dnnl_f32) throws -> dnnl_memory_desc_t {
        var descriptor = dnnl_memory_desc_t()
        let dims64 = dims.map(Int64.init)
        try dnnlCheck(dnnl_memory_desc_init_by_tag(&descriptor, Int32(dims.count), dims64, type, tag),
                      "dnnl_memory_desc_init_by_tag")
        return descriptor
    }

    static func plain(_ dims: [Int], type: dnnl_data_type_t = dnnl_f32) throws -> dnnl_memory_desc_t {
        let tags: [dnnl_format_tag_t] = [dnnl_a, dnnl_ab, dnnl_abc, dnnl_abcd, dnnl_abcde]
        guard dims.count >= 1, dims.count <= tags.count else { throw DNNLError(call: "plain layout of rank \(dims.count)", status: -1) }
        return try descriptor(dims, tag: tags[dims.count - 1], type: type)
    }

    /// The same layout holding another element type. Strides count elements, so a dense layout
    /// stays dense and element-wise loops can convert between the two buffers directly.
    static func retyped(_ descriptor: dnnl_memory_desc_t, _ type: dnnl_data_type_t) -> dnnl_memory_desc_t {
        var result = descriptor
        result.data_type = type
        return result
    }

    /// Whether the buffer holds exactly the logical elements, with no padding between blocks.
    static func isDense(_ descriptor: dnnl_memory_desc_t, dims: [Int]) -> Bool {
        let elementBytes = descriptor.data_type == dnnl_f32 || descriptor.data_type == dnnl_s32 ? 4 : 1
        return size(descriptor) == dims.reduce(1, *) * elementBytes
    }

    static func size(_ descriptor: dnnl_memory_desc_t) -> Int {
        var descriptor = descriptor
        return dnnl_memory_desc_get_size(&descriptor)
    }

    static func equal(_ a: dnnl_memory_desc_t, _ b: dnnl_memory_desc_t) -> Bool {
        var a = a, b = b
        return dnnl_memory_desc_equal(&a, &b) != 0
    }

    static func reorder(from source: dnnl_memory_desc_t, to destination: dnnl_memory_desc_t,
                        engine: DNNLEngine) throws -> DNNLPrimitive {
        var source = source, destination = destination
        var descriptor: dnnl_primitive_desc_t?
        try dnnlCheck(dnnl_reorder_primitive_desc_create(&descriptor, &source, engine.handle, &destination, engine.handle, nil),
                      "dnnl_reorder_primitive_desc_create")
        defer { dnnl_primitive_desc_destroy(descriptor) }
        guard let descriptor else { throw DNNLError(call: "dnnl_reorder_primitive_desc_create", status: -1) }
        return try DNNLPrimitive(descriptor: descriptor)
    }
}

/// How a convolution primitive computes: the element types, and the quantization attributes
/// of an integer convolution. Float convolutions use `.float`.
struct ConvolutionNumerics {
    /// A step oneDNN applies to the scaled accumulator before storing it, in order.
    enum PostOp {
        /// Adds `scale * (residual - zeroPoint)`, the residual already in the destination buffer.
        case sum(scale: Float, zeroPoint: Int32, type: dnnl_data_type_t)
        case relu
        /// Clamps to [lower, upper], in destination units before the zero point is added.
        case clip(lower: Float, upper: Float)
    }

    var sourceType = dnnl_f32
    var weightsType = dnnl_f32
    var destinationType = dnnl_f32
    /// Per output channel: the int32 accumulator (plus bias) times this is the destination value.
    var outputScales: [Float]?
    var sourceZeroPoint: Int32 = 0
    var destinationZeroPoint: Int32 = 0
    var postOps: [PostOp] = []

    /// f32 throughout, with an optional residual sum and clamp at [0, clampUpper] (ReLU: infinity,
    /// ReLU6: 6).
    static func float(residualSum: Bool, clampUpper: Float?) -> ConvolutionNumerics {
        var numerics = ConvolutionNumerics()
        if residualSum { numerics.postOps.append(.sum(scale: 1, zeroPoint: 0, type: dnnl_f32)) }
        if let clampUpper { numerics.postOps.append(clampUpper.isFinite ? .clip(lower: 0, upper: clampUpper) : .relu) }
        return numerics
    }
}

/// A convolution primitive with the layouts oneDNN picked for it, and its weights already in
/// the picked layout. Batch norm is folded into weights and bias; ReLU and a residual sum run
/// as post-ops.
final class DNNLConvolution {
    /// Weights in plain (O, I/G, KH, KW) order: float values, or int8 codes.
    enum Weights {
        case float([Float])
        case int8([Int8])
    }

    let primitive: DNNLPrimitive
    let sourceDescriptor: dnnl_memory_desc_t
    let destinationDescriptor: dnnl_memory_desc_t
    let weightsDescriptor: dnnl_memory_desc_t
    let biasDescriptor: dnnl_memory_desc_t
    let weights: UnsafeMutableRawPointer
    let bias: UnsafeMutableRawPointer
    let outputDims: [Int]

    /// `bias` (O) is f32: the folded bias of a float convolution, or the bias in accumulator
    /// units of an integer one (oneDNN adds it before the output scales).
    init(stream: DNNLStream, inputDims: [Int], conv: Conv2D, weights plainWeights: Weights, bias foldedBias: [Float],
         numerics: ConvolutionNumerics) throws {
        let geometry = try ConvolutionGeometry(input: inputDims, conv: conv)
        let engine = stream.engine
        outputDims = [geometry.batch, geometry.outChannels, geometry.outHeight, geometry.outWidth]
        let weightDims = conv.groups == 1
            ? conv.weight.shape
            : [conv.groups, geometry.outChannelsPerGroup] + conv.weight.shape.dropFirst()
        var sourceAny = try DNNLMemory.descriptor(inputDims, tag: dnnl_format_tag_any, type: numerics.sourceType)
        var weightsAny = try DNNLMemory.descriptor(weightDims, tag: dnnl_format_tag_any, type: numerics.weightsType)
        var biasPlain = try DNNLMemory.plain([geometry.outChannels])
        var destinationAny = try DNNLMemory.descriptor(outputDims, tag: dnnl_format_tag_any, type: numerics.destinationType)
        var descriptor = dnnl_convolution_desc_t()
        let strides: [Int64] = [Int64(geometry.strideY), Int64(geometry.strideX)]
        // oneDNN counts dilation from 0 (no gaps), PyTorch from 1.
        let dilates: [Int64] = [Int64(geometry.dilationY - 1), Int64(geometry.dilationX - 1)]
        let padLeft: [Int64] = [Int64(geometry.padY), Int64(geometry.padX)]
        // Right padding that makes oneDNN's output size equal PyTorch's floor division.
        let padRight: [Int64] = [
            Int64((geometry.outHeight - 1) * geometry.strideY + (geometry.kernelHeight - 1) * geometry.dilationY + 1 - geometry.height - geometry.padY),
            Int64((geometry.outWidth - 1) * geometry.strideX + (geometry.kernelWidth - 1) * geometry.dilationX + 1 - geometry.width - geometry.padX),
        ]
        try dnnlCheck(dnnl_dilated_convolution_forward_desc_init(&descriptor, dnnl_forward_inference, dnnl_convolution_direct,
                                                                 &sourceAny, &weightsAny, &biasPlain, &destinationAny,
                                                                 strides, dilates, padLeft, padRight),
                      "dnnl_dilated_convolution_forward_desc_init")
        var attributes: dnnl_primitive_attr_t?
        try dnnlCheck(dnnl_primitive_attr_create(&attributes), "dnnl_primitive_attr_create")
        defer { dnnl_primitive_attr_destroy(attributes) }
        if let scales = numerics.outputScales {
            // Mask bit 1: one scale per index of dimension 1, the output channel.
            try dnnlCheck(dnnl_primitive_attr_set_output_scales(attributes, Int64(scales.count), scales.count == 1 ? 0 : 1 << 1, scales),
                          "dnnl_primitive_attr_set_output_scales")
        }
        if numerics.sourceZeroPoint != 0 {
            var zeroPoint = numerics.sourceZeroPoint
            try dnnlCheck(dnnl_primitive_attr_set_zero_points(attributes, DNNLArgument.source, 1, 0, &zeroPoint),
                          "dnnl_primitive_attr_set_zero_points(source)")
        }
        if numerics.destinationZeroPoint != 0 {
            var zeroPoint = numerics.destinationZeroPoint
            try dnnlCheck(dnnl_primitive_attr_set_zero_points(attributes, DNNLArgument.destination, 1, 0, &zeroPoint),
                          "dnnl_primitive_attr_set_zero_points(destination)")
        }
        var postOps: dnnl_post_ops_t?
        try dnnlCheck(dnnl_post_ops_create(&postOps), "dnnl_post_ops_create")
        defer { dnnl_post_ops_destroy(postOps) }
        for postOp in numerics.postOps {
            switch postOp {
            case .sum(let scale, let zeroPoint, let type):
                try dnnlCheck(dnnl_post_ops_append_sum_v3(postOps, scale, zeroPoint, type), "dnnl_post_ops_append_sum_v3")
            case .relu:
                try dnnlCheck(dnnl_post_ops_append_eltwise(postOps, 1, dnnl_eltwise_relu, 0, 0), "dnnl_post_ops_append_eltwise")
            case .clip(let lower, let upper):
                try dnnlCheck(dnnl_post_ops_append_eltwise(postOps, 1, dnnl_eltwise_clip, lower, upper), "dnnl_post_ops_append_eltwise")
            }
        }
        try dnnlCheck(dnnl_primitive_attr_set_post_ops(attributes, postOps), "dnnl_primitive_attr_set_post_ops")
        var primitiveDescriptor: dnnl_primitive_desc_t?
        try withUnsafePointer(to: &descriptor) { pointer in
            try dnnlCheck(dnnl_primitive_desc_create(&primitiveDescriptor, pointer, attributes, engine.handle, nil),
                          "dnnl_primitive_desc_create(convolution)")
        }
        guard let primitiveDescriptor else { throw DNNLError(call: "dnnl_primitive_desc_create", status: -1) }
        defer { dnnl_primitive_desc_destroy(primitiveDescriptor) }
        sourceDescriptor = dnnl_primitive_desc_query_md(primitiveDescriptor, dnnl_query_src_md, 0).pointee
        weightsDescriptor = dnnl_primitive_desc_query_md(primitiveDescriptor, dnnl_query_weights_md, 0).pointee
        destinationDescriptor = dnnl_primitive_desc_query_md(primitiveDescriptor, dnnl_query_dst_md, 0).pointee
        biasDescriptor = biasPlain
        primitive = try DNNLPrimitive(descriptor: primitiveDescriptor)

        weights = UnsafeMutableRawPointer.allocate(byteCount: max(4, DNNLMemory.size(weightsDescriptor)), alignment: 64)
        bias = UnsafeMutableRawPointer.allocate(byteCount: geometry.outChannels * 4, alignment: 64)
        foldedBias.withUnsafeBytes { bias.copyMemory(from: $0.baseAddress!, byteCount: geometry.outChannels * 4) }
        // The reorder into oneDNN's layout also computes the compensation terms an integer
        // convolution with a source zero point keeps beside its weights.
        let plainDescriptor = try DNNLMemory.plain(weightDims, type: numerics.weightsType)
        let reorder = try DNNLMemory.reorder(from: plainDescriptor, to: weightsDescriptor, engine: engine)
        let weightsBuffer = weights
        func reorderWeights(_ source: UnsafeMutableRawBufferPointer) throws {
            try stream.execute(reorder, [(DNNLArgument.source, plainDescriptor, source.baseAddress!),
                                         (DNNLArgument.destination, weightsDescriptor, weightsBuffer)])
        }
        switch plainWeights {
        case .float(var values): try values.withUnsafeMutableBytes(reorderWeights)
        case .int8(var codes): try codes.withUnsafeMutableBytes(reorderWeights)
        }
    }

    deinit {
        weights.deallocate()
        bias.deallocate()
    }
}
