import CDNNL
import CKernels

/// A float convolution that qsh runs with its own AVX2 kernels (Sources/CKernels) on
/// activations in oneDNN's nChw8c layout, so it slots between oneDNN primitives without
/// reorders. Batch norm is folded into its weights; a residual sum and a clamp are fused as
/// oneDNN's post-ops would be.
///
/// oneDNN 2.6 has Winograd only on AVX-512; on AVX2 its direct 3x3 kernels are where whole
/// models spend most of their time (Benchmarks/README.md). A 1x1 kernel on the same 6x16 FMA
/// block was tried and measured no faster than oneDNN's, so everything else stays on oneDNN.
protocol BlockedConvolution: AnyObject {
    var sourceDescriptor: dnnl_memory_desc_t { get }
    var destinationDescriptor: dnnl_memory_desc_t { get }
    var outputDims: [Int] { get }
    /// Runs on `source` (`sourceDescriptor`) into `destination` (`destinationDescriptor`,
    /// holding the residual when there is a residual sum).
    func run(source: UnsafeRawPointer, destination: UnsafeMutableRawPointer)
}

enum BlockedConvolutions {
    /// Whether qsh's own kernels run on this machine: they need AVX2 and FMA, and they replace
    /// oneDNN's kernels only where oneDNN itself runs at the AVX2 level. With AVX-512 oneDNN's
    /// direct kernels have twice the vector width (and Winograd of their own); the AVX2 kernels
    /// were measured against oneDNN's AVX2 kernels only.
    static let available = qsh_winograd_available() != 0 && qsh_patch_available() != 0
        && CPUCapabilities.isaName.hasPrefix("avx2")

    static var enabled: Bool { EngineSettings.ownConvolutionKernels && available }

    /// The kernel for this float convolution, or nil when oneDNN's should run it. `weights`
    /// (O, I, KH, KW) and `bias` (O) have batch norm folded in; the clamp is [0, clampUpper] as in
    /// `ConvolutionNumerics.float` (nil: none).
    static func make(geometry: ConvolutionGeometry, weights: [Float], bias: [Float], residualSum: Bool,
                     clampUpper: Float?) throws -> BlockedConvolution? {
        guard enabled else { return nil }
        let epilogue = ConvolutionEpilogue(bias: bias, residualSum: residualSum, clampUpper: clampUpper)
        if WinogradConvolution.applies(to: geometry) {
            return try WinogradConvolution(geometry: geometry, weights: weights, epilogue: epilogue)
        }
        if PatchConvolution.applies(to: geometry) {
            return try PatchConvolution(geometry: geometry, weights: weights, epilogue: epilogue)
        }
        return nil
    }
}

/// How a kernel's items (Winograd tiles, output pixels) split into units of work: chunks of
/// about `preferred` items, as many as a multiple of the workers and equal in size, so that no
/// worker waits on another's last chunk.
struct WorkChunks {
    let itemsPerChunk: Int
    let count: Int

    init(items: Int, preferred: Int, workers: Int = EngineSettings.threads) {
        let workers = max(1, workers)
        var chunks = max(1, (items + max(1, preferred) - 1) / max(1, preferred))
        chunks = (chunks + workers - 1) / workers * workers
        itemsPerChunk = max(1, (items + chunks - 1) / chunks)
        count = (items + itemsPerChunk - 1) / itemsPerChunk
    }
}

/// What the kernels apply to each output: bias, residual sum, clamp.
struct ConvolutionEpilogue {
    /// Padded with zeros to a multiple of 8: the kernels read it 8 channels at a time.
    let bias: [Float]
    let accumulate: Int32
    let lower, upper: Float

    init(bias: [Float], residualSum: Bool, clampUpper: Float?) {
        self.bias = bias + [Float](repeating: 0, count: (bias.count + 7) / 8 * 8 - bias.count)
        accumulate = residualSum ? 1 : 0
        lower = clampUpper == nil ? -.infinity : 0
        upper = clampUpper ?? .infinity
    }
}
