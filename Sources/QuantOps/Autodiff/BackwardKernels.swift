import CBLAS

/// Gradients of a weight layer's or batch norm's parameters. For a batch norm, `weight` is the
/// gradient of gamma and `bias` that of beta.
public struct ParameterGradient: Sendable, Equatable {
    public var weight: Tensor
    public var bias: Tensor?

    public init(weight: Tensor, bias: Tensor?) {
        self.weight = weight
        self.bias = bias
    }
}

/// Per-channel statistics of a batch norm's input measured on the batch itself (training mode).
public struct BatchStatistics: Sendable, Equatable {
    public var mean: [Float]
    /// Biased variance (divided by the number of values per channel), as PyTorch normalizes with.
    public var variance: [Float]
}

/// The adjoints of the engine's kernels: given a node's inputs (and output where cheaper) and
/// the gradient of a scalar with respect to the output, the gradients with respect to the
/// inputs and parameters. Shape checks throw `ShapeProblem`, as the forward kernels do.
enum BackwardKernels {
    /// Inference batch norm is a per-channel affine map: dx = dy * gamma / sigma, scaled in
    /// place. The parameter gradients (dgamma = sum dy * xhat, dbeta = sum dy) are taken first.
    static func batchNormInference(input: Tensor, _ norm: BatchNorm, outputGradient: inout Tensor,
                                   wantParameters: Bool) -> ParameterGradient? {
        let (scale, _) = norm.scaleAndShift()
        var parameters: ParameterGradient? = nil
        if wantParameters {
            let mean = norm.runningMean.data.map(Double.init)
            let inverseSigma = norm.runningVar.data.map { 1 / (Double($0) + Double(norm.epsilon)).squareRoot() }
            let (gamma, beta) = channelReductions(outputGradient, input, mean: mean, inverseSigma: inverseSigma)
            parameters = ParameterGradient(weight: Tensor(shape: norm.gamma.shape, data: gamma.map { Float($0) }),
                                           bias: Tensor(shape: norm.beta.shape, data: beta.map { Float($0) }))
        }
        TapeKernels.scaleChannels(&outputGradient, scale: scale)
        return parameters
    }

    /// Per channel, in Double: sum of dy * (x - mean) * inverseSigma, and sum of dy. Parallel
    /// over channels; each channel sums its planes in image order, whatever the thread count.
    static func channelReductions(_ outputGradient: Tensor, _ input: Tensor, mean: [Double],
                                  inverseSigma: [Double]) -> (weighted: [Double], plain: [Double]) {
        let batch = input.shape[0], channels = input.shape[1]
        let plane = input.count / max(batch * channels, 1)
        var weighted = [Double](repeating: 0, count: channels)
        var plain = [Double](repeating: 0, count: channels)
        outputGradient.data.withUnsafeBufferPointer { dyBuffer in
            input.data.withUnsafeBufferPointer { xBuffer in
                weighted.withUnsafeMutableBufferPointer { weightedBuffer in
                    plain.withUnsafeMutableBufferPointer { plainBuffer in
                        let dy = dyBuffer.baseAddress!, x = xBuffer.baseAddress!
                        let weightedBase = weightedBuffer.baseAddress!, plainBase = plainBuffer.baseAddress!
                        parallelFor(channels) { _, c in
                            let m = Float(mean[c])
                            var total = 0.0, totalWeighted = 0.0
                            for n in 0 ..< batch {
                                let base = (n * channels + c) * plane
                                // Float within a plane (centred, so no cancellation), Double across planes.
                                let (sum, products) = TapeKernels.maskedMoments(dy, mask: nil, lower: 0, upper: 0, x, centre: m,
                                                                                range: base ..< base + plane)
                                total += Double(sum)
                                totalWeighted += Double(products)
                            }
                            plainBase[c] = total
                            weightedBase[c] = totalWeighted * inverseSigma[c]
                        }
                    }
                }
            }
        }
        return (weighted, plain)
    }

    /// Batch norm normalizing with the batch's own statistics, y = gamma * xhat + beta:
    /// dx = gamma / sigma * (dy - mean(dy) - xhat * mean(dy * xhat)), per channel.
    static func batchNormTraining(input: Tensor, _ norm: BatchNorm, statistics: BatchStatistics,
                                  outputGradient: Tensor) -> (input: Tensor, parameters: ParameterGradient) {
        let channels = norm.channels
        let batch = input.shape[0]
        let plane = input.count / max(batch * channels, 1)
        let count = Double(batch * plane)
        let inverseSigma = (0 ..< channels).map { 1 / (Double(statistics.variance[$0]) + Double(norm.epsilon)).squareRoot() }
        let (sumGradientXhat, sumGradient) = channelReductions(outputGradient, input, mean: statistics.mean.map(Double.init),
                                                               inverseSigma: inverseSigma)
        // dx = a * dy + b * (x - mean) + c per channel, the Double coefficients rounded once.
        var a = [Float](repeating: 0, count: channels), b = a, c = a
        for channel in 0 ..< channels {
            let scale = Double(norm.gamma.data[channel]) * inverseSigma[channel]
            let meanGradient = sumGradient[channel] / count, meanWeighted = sumGradientXhat[channel] / count
            a[channel] = Float(scale)
            b[channel] = Float(-scale * meanWeighted * inverseSigma[channel])
            c[channel] = Float(-scale * meanGradient)
        }
        let dx = [Float](unsafeUninitializedCapacity: input.count) { buffer, initialized in
            input.data.withUnsafeBufferPointer { xBuffer in
                outputGradient.data.withUnsafeBufferPointer { dyBuffer in
                    let x = xBuffer.baseAddress!, dy = dyBuffer.baseAddress!, target = buffer.baseAddress!
                    parallelFor(batch * channels) { _, task in
                        let channel = task % channels
                        let (p, q, r, m) = (a[channel], b[channel], c[channel], statistics.mean[channel])
                        for i in task * plane ..< (task + 1) * plane { target[i] = p * dy[i] + q * (x[i] - m) + r }
                    }
                }
            }
            initialized = input.count
        }
        let parameters = ParameterGradient(weight: Tensor(shape: norm.gamma.shape, data: sumGradientXhat.map { Float($0) }),
                                           bias: Tensor(shape: norm.beta.shape, data: sumGradient.map { Float($0) }))
        return (Tensor(shape: input.shape, data: dx), parameters)
    }

    /// Passes the gradient where the input lies strictly inside (lower, upper), in place.
    static func clamp(input: Tensor, outputGradient: inout Tensor, lower: Float, upper: Float) {
        input.data.withUnsafeBufferPointer { xBuffer in
            outputGradient.data.withUnsafeMutableBufferPointer { values in
                let x = xBuffer.baseAddress!, dy = values.baseAddress!
                TapeKernels.chunks(values.count) { range in
                    for i in range where !(x[i] > lower && x[i] < upper) { dy[i] = 0 }
                }
            }
        }
    }

    /// Rounding has zero derivative almost everywhere, so fake quantizers pass the gradient
    /// straight through inside the clipping range and stop it outside (the straight-through
    /// estimator of quantization-aware training).
    static func straightThrough(input: Tensor, _ quantizer: ActivationQuantizer, outputGradient: Tensor,
                                stepSize wantStepSize: Bool, node: String) throws -> (input: Tensor, stepSize: Float?) {
        guard let grid = quantizer.grid() else {
            throw EngineError.uncalibrated(quantizer, node: node)
        }
        let scale = grid.scales[0], zeroPoint = grid.zeroPoints[0]
        let lowest = Float(grid.levels.lowerBound) - zeroPoint, highest = Float(grid.levels.upperBound) - zeroPoint
        let lower = scale * lowest, upper = scale * highest
        let count = input.count
        // Blocks of a fixed size, so that the step size's sum has the same order whatever the
        // thread count.
        let block = 1 << 13
        let blocks = (count + block - 1) / block
        var partials = [Double](repeating: 0, count: wantStepSize && scale > 0 ? blocks : 0)
        let dx = TapeKernels.fresh(input.shape) { target in
            input.data.withUnsafeBufferPointer { x in
                outputGradient.data.withUnsafeBufferPointer { dy in
                    partials.withUnsafeMutableBufferPointer { partialsBuffer in
                        let partials = partialsBuffer
                        func work(_ part: Int) {
                            let range = part * block ..< min(count, (part + 1) * block)
                            // The rounding passes straight through inside the range; outside, nothing.
                            for i in range { target[i] = x[i] >= lower && x[i] <= upper ? dy[i] : 0 }
                            guard !partials.isEmpty else { return }
                            // LSQ's gradient of the step size S (Esser et al., 2020): d x'/d S is
                            // x'/S - x/S inside the range, with the rounding passed straight
                            // through, and the clipped level's (level - Z) outside it.
                            var sum = 0.0
                            for i in range {
                                let level = ActivationQuantizer.roundHalfEven(min(max(x[i] / scale, lowest), highest))
                                let inside = x[i] >= lower && x[i] <= upper
                                sum += Double(dy[i] * (inside ? level - x[i] / scale : level))
                            }
                            partials[part] = sum
                        }
                        if count >= TapeKernels.parallelThreshold {
                            parallelFor(blocks) { _, part in work(part) }
                        } else {
                            for part in 0 ..< blocks { work(part) }
                        }
                    }
                }
            }
        }
        guard wantStepSize else { return (dx, nil) }
        return (dx, Float(partials.reduce(0, +)))
    }

    /// The adjoint of the option-A shortcut: the kept pixels get their gradient, the rest zero.
    static func shortcutA(input: Tensor, stride: Int, padChannels: Int, outputGradient: Tensor) -> Tensor {
        let (n, c, h, w) = (input.shape[0], input.shape[1], input.shape[2], input.shape[3])
        let outH = outputGradient.shape[2], outW = outputGradient.shape[3], outC = outputGradient.shape[1]
        var dx = [Float](repeating: 0, count: input.count)
        for image in 0 ..< n {
            for channel in 0 ..< c {
                let to = (image * c + channel) * h * w
                let from = (image * outC + channel + padChannels) * outH * outW
                for y in 0 ..< outH {
                    for x in 0 ..< outW { dx[to + y * stride * w + x * stride] = outputGradient.data[from + y * outW + x] }
                }
            }
        }
        return Tensor(shape: input.shape, data: dx)
    }

    /// Each output spreads its gradient evenly over its window; padded cells count in the
    /// divisor, as in the forward kernel.
    static func averagePool(input: Tensor, _ pooling: Pooling, outputGradient: Tensor) -> Tensor {
        let divisor = Float(pooling.kernel * pooling.kernel)
        return scatterPool(input: input, pooling, outputGradient: outputGradient) { plane, oy, ox, taps in
            taps.map { ($0, 1 / divisor) }
        }
    }

    /// The gradient goes to the first maximum of each window, the element the forward kept.
    static func maxPool(input: Tensor, _ pooling: Pooling, outputGradient: Tensor) -> Tensor {
        scatterPool(input: input, pooling, outputGradient: outputGradient) { plane, oy, ox, taps in
            var best = -Float.infinity, chosen: Int? = nil
            for tap in taps where chosen == nil || input.data[tap] > best {
                best = input.data[tap]
                chosen = tap
            }
            return chosen.map { [($0, Float(1))] } ?? []
        }
    }

    /// Walks every pooling window and adds `weight * dy` to the input cells `route` picks.
    private static func scatterPool(input: Tensor, _ pooling: Pooling, outputGradient: Tensor,
                                    route: (_ plane: Int, _ oy: Int, _ ox: Int, _ taps: [Int]) -> [(Int, Float)]) -> Tensor {
        let (n, c, h, w) = (input.shape[0], input.shape[1], input.shape[2], input.shape[3])
        let outH = outputGradient.shape[2], outW = outputGradient.shape[3]
        var dx = [Float](repeating: 0, count: input.count)
        var taps: [Int] = []
        taps.reserveCapacity(pooling.kernel * pooling.kernel)
        for plane in 0 ..< (n * c) {
            for oy in 0 ..< outH {
                for ox in 0 ..< outW {
                    taps.removeAll(keepingCapacity: true)
                    for ky in 0 ..< pooling.kernel {
                        let iy = oy * pooling.stride - pooling.padding + ky
                        if iy < 0 || iy >= h { continue }
                        for kx in 0 ..< pooling.kernel {
                            let ix = ox * pooling.stride - pooling.padding + kx
                            if ix < 0 || ix >= w { continue }
                            taps.append((plane * h + iy) * w + ix)
                        }
                    }
                    let dy = outputGradient.data[(plane * outH + oy) * outW + ox]
                    for (index, weight) in route(plane, oy, ox, taps) { dx[index] += weight * dy }
                }
            }
        }
        return Tensor(shape: input.shape, data: dx)
    }

    static func globalAveragePool(input: Tensor, outputGradient: Tensor) -> Tensor {
        let planes = input.shape[0] * input.shape[1]
        let plane = input.count / max(planes, 1)
        var dx = [Float](repeating: 0, count: input.count)
        for index in 0 ..< planes {
            let share = outputGradient.data[index] / Float(plane)
            for i in 0 ..< plane { dx[index * plane + i] = share }
        }
        return Tensor(shape: input.shape, data: dx)
    }

    /// y = x W^T + b: dx = dy W, dW = dy^T x, db = column sums of dy.
    static func linear(input: Tensor, _ layer: Linear, outputGradient: Tensor,
                       wantInput: Bool, wantParameters: Bool) -> (input: Tensor?, parameters: ParameterGradient?) {
        let (n, inFeatures, outFeatures) = (input.shape[0], layer.weight.shape[1], layer.weight.shape[0])
        var inputGradient: Tensor? = nil
        if wantInput {
            var dx = [Float](repeating: 0, count: n * inFeatures)
            outputGradient.data.withUnsafeBufferPointer { dy in
                layer.weight.data.withUnsafeBufferPointer { w in
                    dx.withUnsafeMutableBufferPointer { target in
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(n), Int32(inFeatures), Int32(outFeatures),
                                    1, dy.baseAddress, Int32(outFeatures), w.baseAddress, Int32(inFeatures),
                                    0, target.baseAddress, Int32(inFeatures))
                    }
                }
            }
            inputGradient = Tensor(shape: input.shape, data: dx)
        }
        var parameters: ParameterGradient? = nil
        if wantParameters {
            var dw = [Float](repeating: 0, count: outFeatures * inFeatures)
            outputGradient.data.withUnsafeBufferPointer { dy in
                input.data.withUnsafeBufferPointer { x in
                    dw.withUnsafeMutableBufferPointer { target in
                        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Int32(outFeatures), Int32(inFeatures), Int32(n),
                                    1, dy.baseAddress, Int32(outFeatures), x.baseAddress, Int32(inFeatures),
                                    0, target.baseAddress, Int32(inFeatures))
                    }
                }
            }
            let bias = layer.bias.map { _ in Tensor(shape: [outFeatures], data: channelSums(outputGradient)) }
            parameters = ParameterGradient(weight: Tensor(shape: layer.weight.shape, data: dw), bias: bias)
        }
        return (inputGradient, parameters)
    }
}

/// Adjoints of the operations imported graphs add (`GraphKernels`).
extension BackwardKernels {
    /// The output gradient cut back into each input's channels.
    static func concat(inputs: [Tensor], outputGradient: Tensor) throws -> [Tensor?] {
        let batch = outputGradient.shape[0], channels = outputGradient.shape[1]
        let plane = outputGradient.shape.dropFirst(2).reduce(1, *)
        var offset = 0
        return outputGradient.data.withUnsafeBufferPointer { source in
            inputs.map { input in
                let block = input.shape[1] * plane
                var gradient = [Float](repeating: 0, count: input.count)
                gradient.withUnsafeMutableBufferPointer { target in
                    for n in 0 ..< batch {
                        (target.baseAddress! + n * block).update(from: source.baseAddress! + n * channels * plane + offset, count: block)
                    }
                }
                offset += block
                return Tensor(shape: input.shape, data: gradient)
            }
        }
    }

    /// d(a * b): g * b for a, and g * a for b, summed over the plane where b was broadcast.
    static func multiply(_ a: Tensor, _ b: Tensor, outputGradient: Tensor) throws -> (Tensor, Tensor) {
        let gradientA = try Kernels.multiply(outputGradient, b)
        let product = try Kernels.multiply(outputGradient, a)
        guard a.shape != b.shape else { return (gradientA, product) }
        let plane = a.shape[2] * a.shape[3]
        let sums = product.data.withUnsafeBufferPointer { values in
            (0 ..< b.count).map { index in
                var sum: Float = 0
                for i in 0 ..< plane { sum += values[index * plane + i] }
                return sum
            }
        }
        return (gradientA, Tensor(shape: b.shape, data: sums))
    }

    static func pointwise(input: Tensor, _ function: Pointwise, outputGradient: Tensor) -> Tensor {
        var gradient = outputGradient
        gradient.data.withUnsafeMutableBufferPointer { target in
            input.data.withUnsafeBufferPointer { x in
                for i in target.indices { target[i] *= function.derivative(x[i]) }
            }
        }
        return gradient
    }
}
