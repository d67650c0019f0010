import CDNNL
import CKernels

/// A float 3x3 stride-1 convolution by Winograd F(4x4, 3x3) (Sources/CKernels/winograd_avx2.c):
/// 36 multiplications per 4x4 output tile and channel pair instead of 144. oneDNN 2.6 offers
/// Winograd only on AVX-512; on AVX2 its direct 3x3 kernels were the bottleneck of whole
/// models. Results differ from the exact convolution by rounding only, but more than a direct
/// kernel's: up to about 7e-6 of the largest output on 32 to 40 channels, against 1e-7
/// (BlockedConvolutionTests); whole-model logits stay within the 1e-4 of every golden check.
final class WinogradConvolution: BlockedConvolution {
    let sourceDescriptor: dnnl_memory_desc_t
    let destinationDescriptor: dnnl_memory_desc_t
    let outputDims: [Int]
    private var shape: qsh_winograd_shape
    private let packedWeights: UnsafeMutablePointer<Float>
    private let epilogue: ConvolutionEpilogue
    private let tiles: Int
    private let tilesPerChunk: Int
    private let chunks: Int
    /// One scratch buffer per worker, each for `tilesPerChunk` tiles.
    private var scratch: [UnsafeMutablePointer<Float>] = []

    /// Float, 3x3, stride 1, undilated, ungrouped, with at least 32 input channels: at 16 the
    /// transforms cost what the multiplications save, and oneDNN's direct kernel is as fast
    /// (single-core, batch 200, 32x32: 16.2 ms oneDNN, 16.7 to 18.8 ms Winograd; at 32 channels
    /// 17.8 against 9.9 ms, and 2 to 3.6 times faster from there on, Zen 3).
    static func applies(to geometry: ConvolutionGeometry) -> Bool {
        geometry.kernelHeight == 3 && geometry.kernelWidth == 3 && geometry.strideY == 1 && geometry.strideX == 1
            && geometry.dilationY == 1 && geometry.dilationX == 1 && geometry.groups == 1 && geometry.inChannels >= 32
    }

    /// Tiles per unit of work. Every chunk streams all transformed weights (36 x C x K) once,
    /// and its transformed tiles (36 x tiles x (C + K)) should stay in cache: about as many
    /// tile bytes as weight bytes balances the two. With few channels the weights are tiny and
    /// large chunks save per-chunk work. Measured on Zen 3 (1 MiB L2) for C = K from 16 to 512.
    static func preferredTilesPerChunk(inChannels c: Int, outChannels k: Int) -> Int {
        if c + k <= 64 { return 144 }
        return min(144, max(24, (c * k / (c + k) + 5) / 6 * 6))
    }

    init(geometry: ConvolutionGeometry, weights: [Float], epilogue: ConvolutionEpilogue) throws {
        let (n, c, k) = (geometry.batch, geometry.inChannels, geometry.outChannels)
        outputDims = [n, k, geometry.outHeight, geometry.outWidth]
        sourceDescriptor = try DNNLMemory.descriptor([n, c, geometry.height, geometry.width], tag: dnnl_aBcd8b)
        destinationDescriptor = try DNNLMemory.descriptor(outputDims, tag: dnnl_aBcd8b)
        shape = qsh_winograd_shape(batch: Int32(n), inputChannels: Int32(c), outputChannels: Int32(k),
                                   height: Int32(geometry.height), width: Int32(geometry.width),
                                   outputHeight: Int32(geometry.outHeight), outputWidth: Int32(geometry.outWidth),
                                   padTop: Int32(geometry.padY), padLeft: Int32(geometry.padX))
        let packed = UnsafeMutablePointer<Float>.allocate(capacity: qsh_winograd_weights_count(Int32(k), Int32(c)))
        weights.withUnsafeBufferPointer { qsh_winograd_pack_weights($0.baseAddress, Int32(k), Int32(c), packed) }
        packedWeights = packed
        self.epilogue = epilogue
        tiles = n * ((geometry.outHeight + 3) / 4) * ((geometry.outWidth + 3) / 4)
        let split = WorkChunks(items: tiles, preferred: Self.preferredTilesPerChunk(inChannels: c, outChannels: k))
        tilesPerChunk = split.itemsPerChunk
        chunks = split.count
    }

    func run(source: UnsafeRawPointer, destination: UnsafeMutableRawPointer) {
        let workers = workerCount(for: chunks)
        let floats = qsh_winograd_scratch_count(shape.outputChannels, shape.inputChannels, Int32(tilesPerChunk))
        while scratch.count < workers { scratch.append(.allocate(capacity: floats)) }
        let source = source.assumingMemoryBound(to: Float.self)
        let destination = destination.assumingMemoryBound(to: Float.self)
        let (tiles, tilesPerChunk, epilogue, scratch, packedWeights) = (tiles, tilesPerChunk, epilogue, scratch, packedWeights)
        withUnsafePointer(to: shape) { shape in
            epilogue.bias.withUnsafeBufferPointer { bias in
                parallelFor(chunks) { worker, chunk in
                    let first = chunk * tilesPerChunk
                    qsh_winograd_tiles(shape, source, packedWeights, bias.baseAddress, destination, epilogue.accumulate,
                                       epilogue.lower, epilogue.upper, first, Int32(min(tilesPerChunk, tiles - first)),
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
