import CDNNL
import CKernels

/// A float strided convolution as a matrix product over packed input patches
/// (Sources/CKernels/patch_gemm_avx2.c): the receptive fields of a chunk of output pixels,
/// taken across the batch, are copied into rows and multiplied by the weights on the 6x16 FMA
/// block. oneDNN's direct AVX2 kernel streams all weights once per image; on deep, small
/// strided layers (ResNet-18's 256 -> 512 at 14x14 holds 4.7 MB of them) that makes it wait on
/// memory, while a chunk here reads them once for many images. The sum is the direct
/// convolution's, in another order: it differs by rounding only (about 2e-6 of the largest
/// output, BlockedConvolutionTests).
final class PatchConvolution: BlockedConvolution {
    let sourceDescriptor: dnnl_memory_desc_t
    let destinationDescriptor: dnnl_memory_desc_t
    let outputDims: [Int]
    private var shape: qsh_patch_shape
    private let packedWeights: UnsafeMutablePointer<Float>
    private let epilogue: ConvolutionEpilogue
    private let pixels: Int
    private let pixelsPerChunk: Int
    private let chunks: Int
    /// One scratch buffer per worker, each for `pixelsPerChunk` pixels.
    private var scratch: [UnsafeMutablePointer<Float>] = []

    /// Float, strided, undilated, ungrouped 3x3 layers with at least 128 input channels: there
    /// oneDNN's kernel fell behind (single core, batch 32: 256 -> 512 at 14x14 52.0 against
    /// 56.4 ms, 128 -> 256 at 28x28 47.6 against 48.3 ms); at 64 channels and on the 7x7 stem
    /// (whose packing gathers single floats) oneDNN's is as fast or faster.
    static func applies(to geometry: ConvolutionGeometry) -> Bool {
        geometry.kernelHeight == 3 && geometry.kernelWidth == 3 && (geometry.strideY > 1 || geometry.strideX > 1)
            && geometry.dilationY == 1 && geometry.dilationX == 1 && geometry.groups == 1 && geometry.inChannels >= 128
    }

    /// Pixels per unit of work: the patch rows (pixels x depth floats) should stay in the
    /// 512 KiB L2 beside the product, while each chunk reads all weights once.
    static func preferredPixelsPerChunk(depth: Int, outputs: Int) -> Int {
        let bytesPerPixel = 4 * (depth + outputs)
        return min(192, max(48, (256 * 1024 / bytesPerPixel) / 6 * 6))
    }

    init(geometry: ConvolutionGeometry, weights: [Float], epilogue: ConvolutionEpilogue) throws {
        let (n, c, k) = (geometry.batch, geometry.inChannels, geometry.outChannels)
        outputDims = [n, k, geometry.outHeight, geometry.outWidth]
        sourceDescriptor = try DNNLMemory.descriptor([n, c, geometry.height, geometry.width], tag: dnnl_aBcd8b)
        destinationDescriptor = try DNNLMemory.descriptor(outputDims, tag: dnnl_aBcd8b)
        var shape = qsh_patch_shape(batch: Int32(n), inputChannels: Int32(c), outputChannels: Int32(k),
                                height: Int32(geometry.height), width: Int32(geometry.width),
                                outputHeight: Int32(geometry.outHeight), outputWidth: Int32(geometry.outWidth),
                                kernelHeight: Int32(geometry.kernelHeight), kernelWidth: Int32(geometry.kernelWidth),
                                strideY: Int32(geometry.strideY), strideX: Int32(geometry.strideX),
                                padTop: Int32(geometry.padY), padLeft: Int32(geometry.padX), plainSource: 0)
        let packed = UnsafeMutablePointer<Float>.allocate(capacity: qsh_patch_weights_count(&shape))
        weights.withUnsafeBufferPointer { qsh_patch_pack_weights(&shape, $0.baseAddress, packed) }
        let depth = Int(qsh_patch_depth(&shape))
        self.shape = shape
        packedWeights = packed
        self.epilogue = epilogue
        pixels = n * geometry.outHeight * geometry.outWidth
        let split = WorkChunks(items: pixels, preferred: Self.preferredPixelsPerChunk(depth: depth, outputs: (k + 15) / 16 * 16))
        pixelsPerChunk = split.itemsPerChunk
        chunks = split.count
    }

    func run(source: UnsafeRawPointer, destination: UnsafeMutableRawPointer) {
        let workers = workerCount(for: chunks)
        let floats = withUnsafePointer(to: shape) { [pixelsPerChunk] in qsh_patch_scratch_count($0, Int32(pixelsPerChunk)) }
        while scratch.count < workers { scratch.append(.allocate(capacity: floats)) }
        let source = source.assumingMemoryBound(to: Float.self)
        let destination = destination.assumingMemoryBound(to: Float.self)
        let (pixels, pixelsPerChunk, epilogue, scratch, packedWeights) = (pixels, pixelsPerChunk, epilogue, scratch, packedWeights)
        withUnsafePointer(to: shape) { shape in
            epilogue.bias.withUnsafeBufferPointer { bias in
                parallelFor(chunks) { worker, chunk in
                    let first = chunk * pixelsPerChunk
                    qsh_patch_pixels(shape, source, packedWeights, bias.baseAddress, destination, epilogue.accumulate,
                                     epilogue.lower, epilogue.upper, first, Int32(min(pixelsPerChunk, pixels - first)),
                                     scratch[worker])
                }
            }
        }
    }

    deinit {
        packedWeights.deallocate()
        for buffer in scratch { buffer.deallocate() }
    }
}
