import CDNNL

/// Max and average pooling as a oneDNN primitive, on the activation in whatever layout the
/// convolution before it left it. Pooling on the plain path would cost a reorder out of the
/// blocked layout and one back in for every reader; on ResNet-18's stem that is more time than
/// the pooling itself. The numerics are `Kernels.maxPool` and `Kernels.averagePool`'s: padded
/// cells never win a max, and an average divides by the whole window.
final class DNNLPooling {
    let primitive: DNNLPrimitive
    let sourceDescriptor: dnnl_memory_desc_t
    let destinationDescriptor: dnnl_memory_desc_t
    let outputDims: [Int]

    /// Nil when oneDNN cannot express the window (the floor-divided output size would need
    /// negative right padding); the caller then uses the plain kernel.
    init?(source: dnnl_memory_desc_t, dims: [Int], pooling: Pooling, isMax: Bool, engine: DNNLEngine) throws {
        guard dims.count == 4, source.data_type == dnnl_f32, pooling.kernel >= 1, pooling.stride >= 1,
              pooling.padding >= 0, pooling.padding * 2 <= pooling.kernel else { return nil }
        let (height, width) = (dims[2], dims[3])
        let outHeight = (height + 2 * pooling.padding - pooling.kernel) / pooling.stride + 1
        let outWidth = (width + 2 * pooling.padding - pooling.kernel) / pooling.stride + 1
        guard outHeight >= 1, outWidth >= 1 else { return nil }
        let padRight = [(outHeight - 1) * pooling.stride + pooling.kernel - height - pooling.padding,
                        (outWidth - 1) * pooling.stride + pooling.kernel - width - pooling.padding]
        guard padRight.allSatisfy({ $0 >= 0 }) else { return nil }
        outputDims = [dims[0], dims[1], outHeight, outWidth]
        var sourceDescriptor = source
        var destinationAny = try DNNLMemory.descriptor(outputDims, tag: dnnl_format_tag_any)
        let strides = [Int64(pooling.stride), Int64(pooling.stride)]
        let kernel = [Int64(pooling.kernel), Int64(pooling.kernel)]
        let padLeft = [Int64(pooling.padding), Int64(pooling.padding)]
        var descriptor = dnnl_pooling_desc_t()
        try dnnlCheck(dnnl_pooling_forward_desc_init(&descriptor, dnnl_forward_inference,
                                                     isMax ? dnnl_pooling_max : dnnl_pooling_avg_include_padding,
                                                     &sourceDescriptor, &destinationAny, strides, kernel, padLeft,
                                                     padRight.map(Int64.init)),
                      "dnnl_pooling_forward_desc_init")
        var primitiveDescriptor: dnnl_primitive_desc_t?
        try withUnsafePointer(to: &descriptor) { pointer in
            try dnnlCheck(dnnl_primitive_desc_create(&primitiveDescriptor, pointer, nil, engine.handle, nil),
                          "dnnl_primitive_desc_create(pooling)")
        }
        guard let primitiveDescriptor else { throw DNNLError(call: "dnnl_primitive_desc_create(pooling)", status: -1) }
        defer { dnnl_primitive_desc_destroy(primitiveDescriptor) }
        self.sourceDescriptor = source
        destinationDescriptor = dnnl_primitive_desc_query_md(primitiveDescriptor, dnnl_query_dst_md, 0).pointee
        primitive = try DNNLPrimitive(descriptor: primitiveDescriptor)
    }
}
