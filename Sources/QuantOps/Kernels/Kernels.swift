import CBLAS

/// The numerical operations of the engine on NCHW tensors. Each checks its shapes and throws
/// `ShapeProblem`, which the executor turns into an `EngineError` naming the node.
public enum Kernels {
    /// Inference batch norm: `(x - mean) / sqrt(var + eps) * gamma + beta` per channel.
    public static func batchNorm(_ input: Tensor, _ norm: BatchNorm, epilogueClamp: ClosedRange<Float>? = nil) throws -> Tensor {
        guard input.rank >= 2, input.shape[1] == norm.channels,
              norm.beta.count == norm.channels, norm.runningMean.count == norm.channels,
              norm.runningVar.count == norm.channels else {
            throw ShapeProblem(problem: "batch norm over \(norm.channels) channels cannot take input \(describeShape(input.shape))")
        }
        let (scale, shift) = norm.scaleAndShift()
        var result = input
        let channels = input.shape[1]
        let plane = input.shape.dropFirst(2).reduce(1, *)
        let lower = epilogueClamp?.lowerBound ?? -.infinity, upper = epilogueClamp?.upperBound ?? .infinity
        result.data.withUnsafeMutableBufferPointer { buffer in
            let data = buffer.baseAddress!
            parallelFor(input.shape[0] * channels) { _, index in
                let c = index % channels
                let s = scale[c], t = shift[c]
                let base = data + index * plane
                for i in 0..<plane { base[i] = min(max(base[i] * s + t, lower), upper) }
            }
        }
        return result
    }

    public static func relu(_ input: Tensor) -> Tensor {
        clamp(input, lower: 0, upper: .infinity)
    }

    public static func relu6(_ input: Tensor) -> Tensor {
        clamp(input, lower: 0, upper: 6)
    }

    /// Elementwise, into fresh storage, over the workers for large tensors (the gradient tape
    /// keeps every output, so writing in place would copy first anyway).
    static func clamp(_ input: Tensor, lower: Float, upper: Float) -> Tensor {
        guard input.count > 0 else { return input }
        return input.data.withUnsafeBufferPointer { xBuffer in
            let x = xBuffer.baseAddress!
            return TapeKernels.fresh(input.shape) { target in
                TapeKernels.chunks(input.count) { range in
                    for i in range { target[i] = min(max(x[i], lower), upper) }
                }
            }
        }
    }

    /// `a + b`, clamped to [0, clampTo] when a ReLU (infinity) or ReLU6 (6) follows.
    public static func add(_ a: Tensor, _ b: Tensor, clampTo upper: Float? = nil) throws -> Tensor {
        guard a.shape == b.shape else {
            throw ShapeProblem(problem: "cannot add \(describeShape(a.shape)) and \(describeShape(b.shape))")
        }
        guard a.count > 0 else { return a }
        let lower: Float = upper == nil ? -.infinity : 0
        let ceiling = upper ?? .infinity
        return a.data.withUnsafeBufferPointer { aBuffer in
            b.data.withUnsafeBufferPointer { bBuffer in
                let x = aBuffer.baseAddress!, y = bBuffer.baseAddress!
                return TapeKernels.fresh(a.shape) { target in
                    TapeKernels.chunks(a.count) { range in
                        for i in range { target[i] = min(max(x[i] + y[i], lower), ceiling) }
                    }
                }
            }
        }
    }

    /// ResNet option-A shortcut: `x[:, :, ::stride, ::stride]` with `padChannels` zero channels
    /// before and after.
    public static func shortcutA(_ input: Tensor, stride: Int, padChannels: Int) throws -> Tensor {
        guard input.rank == 4, stride >= 1, padChannels >= 0 else {
            throw ShapeProblem(problem: "option-A shortcut needs an NCHW input, stride >= 1 and padding >= 0; got \(describeShape(input.shape)), stride \(stride), padding \(padChannels)")
        }
        let (n, c, h, w) = (input.shape[0], input.shape[1], input.shape[2], input.shape[3])
        let outH = (h + stride - 1) / stride, outW = (w + stride - 1) / stride
        let outC = c + 2 * padChannels
        var output = [Float](repeating: 0, count: n * outC * outH * outW)
        input.data.withUnsafeBufferPointer { source in
            output.withUnsafeMutableBufferPointer { target in
                for image in 0..<n {
                    for channel in 0..<c {
                        let from = (image * c + channel) * h * w
                        let to = (image * outC + channel + padChannels) * outH * outW
                        for y in 0..<outH {
                            for x in 0..<outW {
                                target[to + y * outW + x] = source[from + y * stride * w + x * stride]
                            }
                        }
                    }
                }
            }
        }
        return Tensor(shape: [n, outC, outH, outW], data: output)
    }

    public static func averagePool(_ input: Tensor, _ pooling: Pooling) throws -> Tensor {
        // PyTorch's default count_include_pad=True: padded cells count in the divisor.
        let divisor = Float(pooling.kernel * pooling.kernel)
        return try pool(input, pooling, initial: 0, combine: +, finish: { $0 / divisor })
    }

    public static func maxPool(_ input: Tensor, _ pooling: Pooling) throws -> Tensor {
        try pool(input, pooling, initial: -.infinity, combine: { max($0, $1) }, finish: { $0 })
    }

    private static func pool(_ input: Tensor, _ pooling: Pooling, initial: Float,
                             combine: (Float, Float) -> Float, finish: (Float) -> Float) throws -> Tensor {
        guard input.rank == 4, pooling.kernel >= 1, pooling.stride >= 1, pooling.padding >= 0,
              pooling.padding * 2 <= pooling.kernel else {
            throw ShapeProblem(problem: "pooling needs an NCHW input, kernel and stride >= 1, padding at most half the kernel; got \(describeShape(input.shape)), kernel \(pooling.kernel), stride \(pooling.stride), padding \(pooling.padding)")
        }
        let (n, c, h, w) = (input.shape[0], input.shape[1], input.shape[2], input.shape[3])
        let outH = (h + 2 * pooling.padding - pooling.kernel) / pooling.stride + 1
        let outW = (w + 2 * pooling.padding - pooling.kernel) / pooling.stride + 1
        guard outH >= 1, outW >= 1 else {
            throw ShapeProblem(problem: "a \(pooling.kernel)x\(pooling.kernel) pooling window does not fit a \(h)x\(w) input")
        }
        var output = [Float](repeating: 0, count: n * c * outH * outW)
        input.data.withUnsafeBufferPointer { source in
            output.withUnsafeMutableBufferPointer { target in
                // Planes are independent: each worker writes its own.
                parallelFor(n * c) { _, plane in
                    for oy in 0..<outH {
                        for ox in 0..<outW {
                            var value = initial
                            for ky in 0..<pooling.kernel {
                                let iy = oy * pooling.stride - pooling.padding + ky
                                if iy < 0 || iy >= h { continue }
                                for kx in 0..<pooling.kernel {
                                    let ix = ox * pooling.stride - pooling.padding + kx
                                    if ix < 0 || ix >= w { continue }
                                    value = combine(value, source[(plane * h + iy) * w + ix])
                                }
                            }
                            target[(plane * outH + oy) * outW + ox] = finish(value)
                        }
                    }
                }
            }
        }
        return Tensor(shape: [n, c, outH, outW], data: output)
    }

    /// Mean over each channel's plane; output (N, C, 1, 1) as PyTorch's adaptive pool to 1x1.
    public static func globalAveragePool(_ input: Tensor) throws -> Tensor {
        guard input.rank == 4 else {
            throw ShapeProblem(problem: "global average pooling needs an NCHW input, got \(describeShape(input.shape))")
        }
        let planes = input.shape[0] * input.shape[1]
        let plane = input.shape[2] * input.shape[3]
        var output = [Float](repeating: 0, count: planes)
        input.data.withUnsafeBufferPointer { source in
            for index in 0..<planes {
                var sum: Float = 0
                for i in 0..<plane { sum += source[index * plane + i] }
                output[index] = sum / Float(plane)
            }
        }
        return Tensor(shape: [input.shape[0], input.shape[1], 1, 1], data: output)
    }

    /// (N, ...) to (N, product of the rest).
    public static func flatten(_ input: Tensor) throws -> Tensor {
        guard input.rank >= 1 else { throw ShapeProblem(problem: "cannot flatten a scalar") }
        return input.reshaped([input.shape[0], input.count / max(1, input.shape[0])])
    }

    /// `x W^T + b` for x (N, in) and W (out, in).
    public static func linear(_ input: Tensor, _ layer: Linear) throws -> Tensor {
        let weight = layer.weight.shape
        guard weight.count == 2, input.rank == 2, input.shape[1] == weight[1] else {
            throw ShapeProblem(problem: "linear weight \(describeShape(weight)) cannot take input \(describeShape(input.shape)); flatten first, and in-features must match")
        }
        if let bias = layer.bias, bias.count != weight[0] {
            throw ShapeProblem(problem: "bias has \(bias.count) values for \(weight[0]) outputs")
        }
        let (n, inFeatures, outFeatures) = (input.shape[0], weight[1], weight[0])
        var output = [Float](repeating: 0, count: n * outFeatures)
        if let bias = layer.bias {
            for row in 0..<n { for j in 0..<outFeatures { output[row * outFeatures + j] = bias.data[j] } }
        }
        input.data.withUnsafeBufferPointer { x in
            layer.weight.data.withUnsafeBufferPointer { w in
                output.withUnsafeMutableBufferPointer { y in
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(n), Int32(outFeatures), Int32(inFeatures),
                                1, x.baseAddress, Int32(inFeatures), w.baseAddress, Int32(inFeatures),
                                1, y.baseAddress, Int32(outFeatures))
                }
            }
        }
        return Tensor(shape: [n, outFeatures], data: output)
    }
}

extension BatchNorm {
    /// The per-channel affine map of inference batch norm: y = x * scale + shift.
    public func scaleAndShift() -> (scale: [Float], shift: [Float]) {
        var scale = [Float](repeating: 0, count: channels)
        var shift = [Float](repeating: 0, count: channels)
        for c in 0..<channels {
            scale[c] = gamma.data[c] / (runningVar.data[c] + epsilon).squareRoot()
            shift[c] = beta.data[c] - runningMean.data[c] * scale[c]
        }
        return (scale, shift)
    }
}
