import CBLAS

/// How whole-model inference computes convolutions. One place decides, so a measurement can
/// change the choice (see `Benchmarks/README.md`).
///
/// Whole-model runs, observed ones included, go through `CompiledModel` whatever the choice.
/// Single nodes (`ForwardPass.evaluate`), the node-by-node reference (`ForwardPass.reference`) and
/// batch-norm re-estimation use im2col + SGEMM on plain NCHW tensors; depthwise convolutions
/// there use a direct loop, where a GEMM with one output row would waste most of its work.
public enum ConvolutionBackend: Sendable {
    /// im2col + OpenBLAS SGEMM on plain NCHW tensors, the plan run node by node.
    case im2colGEMM
    /// oneDNN primitives on blocked layouts kept between layers (`CompiledModel`).
    case oneDNN

    /// The process-wide choice; oneDNN measured faster (Benchmarks/README.md). Settable so the
    /// paths can be compared and the GEMM path used where oneDNN is unavailable.
    public static var current: ConvolutionBackend {
        get { selection.withLock { $0 } }
        set { selection.withLock { $0 = newValue } }
    }

    private static let selection = LockedValue<ConvolutionBackend>(.oneDNN)
}

/// A per-output-channel affine map and clamp applied to a convolution's output while it is
/// still in cache: `min(max(x * scale[c] + shift[c], lower), upper)`. Lets the executor fuse
/// a following batch norm and ReLU into the convolution.
public struct ChannelEpilogue: Sendable, Equatable {
    public var scale: [Float]
    public var shift: [Float]
    public var lower: Float
    public var upper: Float

    public init(scale: [Float], shift: [Float], lower: Float = -.infinity, upper: Float = .infinity) {
        self.scale = scale
        self.shift = shift
        self.lower = lower
        self.upper = upper
    }
}

/// A shape that does not fit an operation; the executor adds the node name.
struct ShapeProblem: Error {
    var problem: String
}

struct ConvolutionGeometry {
    let batch, inChannels, height, width: Int
    let outChannels, groups, kernelHeight, kernelWidth: Int
    let strideY, strideX, padY, padX, dilationY, dilationX: Int
    /// Padding below and right of the input (asymmetric only in imported graphs).
    let padBottom, padRight: Int
    let outHeight, outWidth: Int

    var inChannelsPerGroup: Int { inChannels / groups }
    var outChannelsPerGroup: Int { outChannels / groups }
    var columnRows: Int { inChannelsPerGroup * kernelHeight * kernelWidth }
    var outPlane: Int { outHeight * outWidth }
    var inPlane: Int { height * width }
    var isPointwiseIdentity: Bool {
        kernelHeight == 1 && kernelWidth == 1 && strideY == 1 && strideX == 1 && padY == 0 && padX == 0
            && padBottom == 0 && padRight == 0
    }
    var isDepthwise: Bool { groups == inChannels && groups == outChannels && groups > 1 }

    init(input: [Int], conv: Conv2D) throws {
        guard input.count == 4 else {
            throw ShapeProblem(problem: "convolution needs an NCHW input, got \(describeShape(input))")
        }
        let weight = conv.weight.shape
        guard weight.count == 4 else {
            throw ShapeProblem(problem: "convolution weight must be 4-D, got \(describeShape(weight))")
        }
        guard conv.groups >= 1, weight[0] % conv.groups == 0 else {
            throw ShapeProblem(problem: "\(weight[0]) output channels do not split into \(conv.groups) groups")
        }
        guard input[1] == weight[1] * conv.groups else {
            throw ShapeProblem(problem: "input has \(input[1]) channels, weight \(describeShape(weight)) with \(conv.groups) group(s) expects \(weight[1] * conv.groups)")
        }
        if let bias = conv.bias, bias.count != weight[0] {
            throw ShapeProblem(problem: "bias has \(bias.count) values for \(weight[0]) output channels")
        }
        guard conv.stride.0 >= 1, conv.stride.1 >= 1, conv.dilation.0 >= 1, conv.dilation.1 >= 1,
              conv.padding.0 >= 0, conv.padding.1 >= 0, conv.trailingPadding.0 >= 0, conv.trailingPadding.1 >= 0 else {
            throw ShapeProblem(problem: "stride and dilation must be at least 1 and padding at least 0")
        }
        batch = input[0]; inChannels = input[1]; height = input[2]; width = input[3]
        outChannels = weight[0]; groups = conv.groups; kernelHeight = weight[2]; kernelWidth = weight[3]
        (strideY, strideX) = conv.stride
        (padY, padX) = conv.padding
        (padBottom, padRight) = conv.trailingPadding
        (dilationY, dilationX) = conv.dilation
        outHeight = (height + padY + padBottom - dilationY * (kernelHeight - 1) - 1) / strideY + 1
        outWidth = (width + padX + padRight - dilationX * (kernelWidth - 1) - 1) / strideX + 1
        guard outHeight >= 1, outWidth >= 1 else {
            throw ShapeProblem(problem: "a \(kernelHeight)x\(kernelWidth) kernel does not fit a \(height)x\(width) input with this padding and dilation")
        }
    }
}

extension Kernels {
    /// 2-D convolution of an NCHW batch; `epilogue` (optional) is applied per output channel.
    public static func conv2d(_ input: Tensor, _ conv: Conv2D, epilogue: ChannelEpilogue? = nil) throws -> Tensor {
        let geometry = try ConvolutionGeometry(input: input.shape, conv: conv)
        if let epilogue, epilogue.scale.count != geometry.outChannels || epilogue.shift.count != geometry.outChannels {
            throw ShapeProblem(problem: "fused channel map has \(epilogue.scale.count) values for \(geometry.outChannels) channels")
        }
        let channelMap = ResolvedChannelMap(channels: geometry.outChannels, bias: conv.bias?.data, epilogue: epilogue)
        let outShape = [geometry.batch, geometry.outChannels, geometry.outHeight, geometry.outWidth]
        let outCount = outShape.reduce(1, *)
        let output = [Float](unsafeUninitializedCapacity: outCount) { buffer, initialized in
            let out = buffer.baseAddress!
            input.data.withUnsafeBufferPointer { inputBuffer in
                conv.weight.data.withUnsafeBufferPointer { weightBuffer in
                    let x = inputBuffer.baseAddress!, w = weightBuffer.baseAddress!
                    if geometry.isDepthwise {
                        depthwiseDirect(geometry, x, w, out, channelMap)
                    } else {
                        im2colGEMM(geometry, x, w, out, channelMap)
                    }
                }
            }
            initialized = outCount
        }
        return Tensor(shape: outShape, data: output)
    }

    private static func im2colGEMM(_ g: ConvolutionGeometry, _ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>,
                                   _ out: UnsafeMutablePointer<Float>, _ channelMap: ResolvedChannelMap?) {
        let rows = g.columnRows, columns = g.outPlane
        let needsColumns = !g.isPointwiseIdentity
        let tasks = g.batch * g.groups
        // Fewer (image, group) tasks than workers: run them in turn, each GEMM split by columns.
        let splitColumns = tasks < EngineSettings.threads
        let workers = splitColumns ? 1 : workerCount(for: tasks)
        let scratch = UnsafeMutablePointer<Float>.allocate(capacity: needsColumns ? rows * columns * workers : 1)
        defer { scratch.deallocate() }
        let runTask = { (worker: Int, task: Int) in
            let image = task / g.groups, group = task % g.groups
            let source = x + (image * g.inChannels + group * g.inChannelsPerGroup) * g.inPlane
            let matrix: UnsafePointer<Float>
            if needsColumns {
                let columnsBuffer = scratch + worker * rows * columns
                im2col(g, source, columnsBuffer)
                matrix = UnsafePointer(columnsBuffer)
            } else {
                matrix = source
            }
            let weights = w + group * g.outChannelsPerGroup * rows
            let firstChannel = group * g.outChannelsPerGroup
            let target = out + (image * g.outChannels + firstChannel) * columns
            let chunks = splitColumns ? min(EngineSettings.threads, max(1, columns / 16)) : 1
            let chunk = (columns + chunks - 1) / chunks
            parallelFor(chunks) { _, part in
                let start = part * chunk
                let width = min(chunk, columns - start)
                guard width > 0 else { return }
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(g.outChannelsPerGroup), Int32(width),
                            Int32(rows), 1, weights, Int32(rows), matrix + start, Int32(columns), 0,
                            target + start, Int32(columns))
                channelMap?.apply(to: target + start, rowStride: columns, width: width,
                                  channels: firstChannel..<(firstChannel + g.outChannelsPerGroup))
            }
        }
        if splitColumns {
            for task in 0..<tasks { runTask(0, task) }
        } else {
            parallelFor(tasks, runTask)
        }
    }

    /// Unfolds one image's group of channels into a (channels*kh*kw) x (outH*outW) matrix.
    private static func im2col(_ g: ConvolutionGeometry, _ source: UnsafePointer<Float>,
                               _ columns: UnsafeMutablePointer<Float>) {
        let outW = g.outWidth, outH = g.outHeight, inW = g.width, inH = g.height
        var row = columns
        for channel in 0..<g.inChannelsPerGroup {
            let plane = source + channel * g.inPlane
            for ky in 0..<g.kernelHeight {
                for kx in 0..<g.kernelWidth {
                    let offsetX = kx * g.dilationX - g.padX
                    // Output columns whose input column lies inside the image.
                    let firstX = offsetX >= 0 ? 0 : min(outW, (-offsetX + g.strideX - 1) / g.strideX)
                    let lastX = max(firstX, min(outW, inW - offsetX > 0 ? (inW - offsetX - 1) / g.strideX + 1 : 0))
                    for oy in 0..<outH {
                        let iy = oy * g.strideY - g.padY + ky * g.dilationY
                        let target = row + oy * outW
                        if iy < 0 || iy >= inH {
                            target.update(repeating: 0, count: outW)
                            continue
                        }
                        let line = plane + iy * inW + offsetX
                        if firstX > 0 { target.update(repeating: 0, count: firstX) }
                        if g.strideX == 1 {
                            (target + firstX).update(from: line + firstX, count: lastX - firstX)
                        } else {
                            var ox = firstX
                            while ox < lastX {
                                target[ox] = line[ox * g.strideX]
                                ox += 1
                            }
                        }
                        if lastX < outW { (target + lastX).update(repeating: 0, count: outW - lastX) }
                    }
                    row += outH * outW
                }
            }
        }
    }

    /// One filter per channel: a direct loop, parallel over (image, channel) planes.
    private static func depthwiseDirect(_ g: ConvolutionGeometry, _ x: UnsafePointer<Float>,
                                        _ w: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>,
                                        _ channelMap: ResolvedChannelMap?) {
        let kernelSize = g.kernelHeight * g.kernelWidth
        parallelFor(g.batch * g.outChannels) { _, task in
            let channel = task % g.outChannels
            let plane = x + task * g.inPlane
            let filter = w + channel * kernelSize
            let target = out + task * g.outPlane
            for oy in 0..<g.outHeight {
                for ox in 0..<g.outWidth {
                    var sum: Float = 0
                    for ky in 0..<g.kernelHeight {
                        let iy = oy * g.strideY - g.padY + ky * g.dilationY
                        if iy < 0 || iy >= g.height { continue }
                        for kx in 0..<g.kernelWidth {
                            let ix = ox * g.strideX - g.padX + kx * g.dilationX
                            if ix < 0 || ix >= g.width { continue }
                            sum += plane[iy * g.width + ix] * filter[ky * g.kernelWidth + kx]
                        }
                    }
                    target[oy * g.outWidth + ox] = sum
                }
            }
            channelMap?.apply(to: target, rowStride: g.outPlane, width: g.outPlane, channels: channel..<(channel + 1))
        }
    }

}

/// Bias and epilogue folded into one scale, shift and clamp per channel.
struct ResolvedChannelMap {
    let scale: [Float]
    let shift: [Float]
    let lower: Float
    let upper: Float

    init?(channels: Int, bias: [Float]?, epilogue: ChannelEpilogue?) {
        guard bias != nil || epilogue != nil else { return nil }
        let scale = epilogue?.scale ?? [Float](repeating: 1, count: channels)
        var shift = epilogue?.shift ?? [Float](repeating: 0, count: channels)
        if let bias {
            // (x + b) * s + t = x * s + (b * s + t)
            for c in 0..<channels { shift[c] += bias[c] * scale[c] }
        }
        self.scale = scale
        self.shift = shift
        lower = epilogue?.lower ?? -.infinity
        upper = epilogue?.upper ?? .infinity
    }

    /// Maps rows `channels` of a block whose rows are `rowStride` apart, `width` values each.
    func apply(to block: UnsafeMutablePointer<Float>, rowStride: Int, width: Int, channels: Range<Int>) {
        for (row, c) in channels.enumerated() {
            let s = scale[c], t = shift[c]
            let line = block + row * rowStride
            for i in 0..<width { line[i] = min(max(line[i] * s + t, lower), upper) }
        }
    }
}
