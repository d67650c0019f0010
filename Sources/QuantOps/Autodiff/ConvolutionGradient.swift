import CBLAS

/// Reverse-mode convolution: the transposed GEMMs of the forward im2col formulation.
///
/// For one (image, group) with unfolded input `X` (rows x outPlane) and filters `W`
/// (outChannels x rows), the forward pass is `Y = W X`, so
///   dX_columns = W^T dY   (then folded back onto the image: col2im, summing overlaps)
///   dW        += dY X^T   (summed over images).
/// Work is split over (image, group) tasks; each worker sums its own weight gradient, and the
/// workers' sums are added in worker order, so a fixed thread count gives identical results.
extension BackwardKernels {
    /// With `stream`, the oneDNN backward primitives run where the backend is oneDNN and the
    /// geometry is supported; otherwise the GEMM formulation below.
    static func conv2d(input: Tensor, _ conv: Conv2D, outputGradient: Tensor,
                       wantInput: Bool, wantParameters: Bool, stream: DNNLStream? = nil) throws -> (input: Tensor?, parameters: ParameterGradient?) {
        let g = try ConvolutionGeometry(input: input.shape, conv: conv)
        let outShape = [g.batch, g.outChannels, g.outHeight, g.outWidth]
        guard outputGradient.shape == outShape else {
            throw ShapeProblem(problem: "output gradient \(describeShape(outputGradient.shape)) does not match the convolution's output \(describeShape(outShape))")
        }
        if let stream, let convolution = TrainingConvolutions.convolution(inputDims: input.shape, conv: conv) {
            let step = try convolution.backward(input: input, outputGradient: outputGradient, weight: conv.weight,
                                                wantInput: wantInput, weightShape: wantParameters ? conv.weight.shape : nil,
                                                stream: stream)
            var parameters: ParameterGradient? = nil
            if let weight = step.weight {
                let bias = conv.bias.map { _ in Tensor(shape: [g.outChannels], data: channelSums(outputGradient)) }
                parameters = ParameterGradient(weight: weight, bias: bias)
            }
            return (step.input, parameters)
        }
        let rows = g.columnRows, columns = g.outPlane
        let tasks = g.batch * g.groups
        let workers = workerCount(for: tasks)
        let directInput = g.isPointwiseIdentity
        let scratch = UnsafeMutablePointer<Float>.allocate(capacity: rows * columns * workers)
        defer { scratch.deallocate() }

        var inputGradient: [Float]? = nil
        if wantInput {
            var dx = [Float](repeating: 0, count: input.count)
            dx.withUnsafeMutableBufferPointer { dxBuffer in
                conv.weight.data.withUnsafeBufferPointer { wBuffer in
                    outputGradient.data.withUnsafeBufferPointer { dyBuffer in
                        let dxBase = dxBuffer.baseAddress!, w = wBuffer.baseAddress!, dy = dyBuffer.baseAddress!
                        parallelFor(tasks) { worker, task in
                            let image = task / g.groups, group = task % g.groups
                            let weights = w + group * g.outChannelsPerGroup * rows
                            let source = dy + (image * g.outChannels + group * g.outChannelsPerGroup) * columns
                            let target = dxBase + (image * g.inChannels + group * g.inChannelsPerGroup) * g.inPlane
                            let columnsBuffer = directInput ? target : scratch + worker * rows * columns
                            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Int32(rows), Int32(columns),
                                        Int32(g.outChannelsPerGroup), 1, weights, Int32(rows), source, Int32(columns),
                                        0, columnsBuffer, Int32(columns))
                            if !directInput { col2im(g, columnsBuffer, target) }
                        }
                    }
                }
            }
            inputGradient = dx
        }

        var parameters: ParameterGradient? = nil
        if wantParameters {
            let weightCount = conv.weight.count
            var perWorker = [Float](repeating: 0, count: weightCount * workers)
            perWorker.withUnsafeMutableBufferPointer { sums in
                input.data.withUnsafeBufferPointer { xBuffer in
                    outputGradient.data.withUnsafeBufferPointer { dyBuffer in
                        let x = xBuffer.baseAddress!, dy = dyBuffer.baseAddress!, sumBase = sums.baseAddress!
                        parallelFor(tasks) { worker, task in
                            let image = task / g.groups, group = task % g.groups
                            let source = x + (image * g.inChannels + group * g.inChannelsPerGroup) * g.inPlane
                            let unfolded: UnsafePointer<Float>
                            if directInput {
                                unfolded = source
                            } else {
                                let columnsBuffer = scratch + worker * rows * columns
                                im2col(g, source, columnsBuffer)
                                unfolded = UnsafePointer(columnsBuffer)
                            }
                            let gradient = dy + (image * g.outChannels + group * g.outChannelsPerGroup) * columns
                            let target = sumBase + worker * weightCount + group * g.outChannelsPerGroup * rows
                            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(g.outChannelsPerGroup), Int32(rows),
                                        Int32(columns), 1, gradient, Int32(columns), unfolded, Int32(columns),
                                        1, target, Int32(rows))
                        }
                    }
                }
            }
            var weight = [Float](perWorker[0 ..< weightCount])
            for worker in 1 ..< workers {
                let offset = worker * weightCount
                for i in 0 ..< weightCount { weight[i] += perWorker[offset + i] }
            }
            let bias = conv.bias.map { _ in
                Tensor(shape: [g.outChannels], data: channelSums(outputGradient))
            }
            parameters = ParameterGradient(weight: Tensor(shape: conv.weight.shape, data: weight), bias: bias)
        }
        return (inputGradient.map { Tensor(shape: input.shape, data: $0) }, parameters)
    }

    /// Sum of an NCHW (or NC) tensor over everything but the channel axis: Float within a
    /// plane, Double across planes, each channel in image order.
    static func channelSums(_ tensor: Tensor) -> [Float] {
        let batch = tensor.shape[0], channels = tensor.shape[1]
        let plane = tensor.count / max(batch * channels, 1)
        var sums = [Float](repeating: 0, count: channels)
        tensor.data.withUnsafeBufferPointer { values in
            sums.withUnsafeMutableBufferPointer { target in
                let x = values.baseAddress!, sumBase = target.baseAddress!
                let body = { (_: Int, c: Int) in
                    var total = 0.0
                    for n in 0 ..< batch {
                        let base = (n * channels + c) * plane
                        var sum: Float = 0
                        for i in base ..< base + plane { sum += x[i] }
                        total += Double(sum)
                    }
                    sumBase[c] = Float(total)
                }
                if tensor.count >= TapeKernels.parallelThreshold {
                    parallelFor(channels, body)
                } else {
                    for c in 0 ..< channels { body(0, c) }
                }
            }
        }
        return sums
    }

    /// Unfolds one image's group of channels into a (channels*kh*kw) x (outH*outW) matrix.
    static func im2col(_ g: ConvolutionGeometry, _ source: UnsafePointer<Float>, _ columns: UnsafeMutablePointer<Float>) {
        visitTaps(g) { row, plane, oy, iy, offsetX, firstX, lastX in
            let target = columns + row * g.outPlane + oy * g.outWidth
            guard let iy else {
                target.update(repeating: 0, count: g.outWidth)
                return
            }
            let line = source + plane * g.inPlane + iy * g.width + offsetX
            if firstX > 0 { target.update(repeating: 0, count: firstX) }
            if g.strideX == 1 {
                (target + firstX).update(from: line + firstX, count: max(0, lastX - firstX))
            } else {
                var ox = firstX
                while ox < lastX {
                    target[ox] = line[ox * g.strideX]
                    ox += 1
                }
            }
            if lastX < g.outWidth { (target + lastX).update(repeating: 0, count: g.outWidth - lastX) }
        }
    }

    /// The adjoint of `im2col`: adds every column entry back onto the input cell it was read from.
    static func col2im(_ g: ConvolutionGeometry, _ columns: UnsafePointer<Float>, _ target: UnsafeMutablePointer<Float>) {
        visitTaps(g) { row, plane, oy, iy, offsetX, firstX, lastX in
            guard let iy else { return }
            let source = columns + row * g.outPlane + oy * g.outWidth
            let line = target + plane * g.inPlane + iy * g.width + offsetX
            if g.strideX == 1 {
                // Contiguous on both sides: a loop the compiler vectorizes.
                for ox in firstX ..< max(firstX, lastX) { line[ox] += source[ox] }
                return
            }
            var ox = firstX
            while ox < lastX {
                line[ox * g.strideX] += source[ox]
                ox += 1
            }
        }
    }

    /// Calls `body` for every (column row, output row) of the unfolded matrix with the input row
    /// it reads (nil when it falls in the padding) and the range of output columns whose input
    /// column lies inside the image. One walk shared by `im2col` and its adjoint keeps them exact
    /// transposes of each other.
    private static func visitTaps(_ g: ConvolutionGeometry,
                                  _ body: (_ row: Int, _ plane: Int, _ oy: Int, _ iy: Int?, _ offsetX: Int,
                                           _ firstX: Int, _ lastX: Int) -> Void) {
        var row = 0
        for plane in 0 ..< g.inChannelsPerGroup {
            for ky in 0 ..< g.kernelHeight {
                for kx in 0 ..< g.kernelWidth {
                    let offsetX = kx * g.dilationX - g.padX
                    let firstX = offsetX >= 0 ? 0 : min(g.outWidth, (-offsetX + g.strideX - 1) / g.strideX)
                    let lastX = max(firstX, min(g.outWidth, g.width - offsetX > 0 ? (g.width - offsetX - 1) / g.strideX + 1 : 0))
                    for oy in 0 ..< g.outHeight {
                        let iy = oy * g.strideY - g.padY + ky * g.dilationY
                        body(row, plane, oy, iy >= 0 && iy < g.height ? iy : nil, offsetX, firstX, lastX)
                    }
                    row += 1
                }
            }
        }
    }
}
