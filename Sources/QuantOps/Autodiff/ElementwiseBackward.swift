/// The adjoint of a clamp (ReLU, ReLU6), an inference batch norm, or a clamp that follows an
/// inference batch norm, in one pass that also adds the gradient already gathered for the
/// target node:
///
///     gradient = addend + mask(clampInput) * dy * scale[c]
///
/// with `mask` 1 where the clamp's input lies strictly inside (lower, upper). Where the batch
/// norm's parameters are wanted, the same pass sums, per (image, channel) plane, g and
/// g * (normInput - mean[c]) for g = mask * dy, the gradient at the batch norm's output.
struct ElementwiseBackward {
    var clampInput: Tensor?
    var lower: Float = 0
    var upper: Float = .infinity
    var scale: [Float]?
    /// The batch norm's input and running mean, for its parameter gradients.
    var normInput: Tensor?
    var mean: [Float] = []

    struct Result {
        var gradient: Tensor
        /// Per channel, in Double: sum of g and of g * (x - mean).
        var sums: [Double]?
        var weightedSums: [Double]?
    }

    func run(_ outputGradient: Tensor, addend: Tensor?) throws -> Result {
        let shape = outputGradient.shape
        for other in [clampInput, addend, normInput] {
            if let other, other.shape != shape {
                throw ShapeProblem(problem: "gradient \(describeShape(shape)) does not match \(describeShape(other.shape))")
            }
        }
        let batch = shape.count >= 2 ? shape[0] : 1
        let channels = shape.count >= 2 ? shape[1] : 1
        if let scale, scale.count != channels {
            throw ShapeProblem(problem: "batch norm over \(scale.count) channels cannot take a gradient \(describeShape(shape))")
        }
        let planeCount = batch * channels
        let reduce = normInput != nil
        var planeSums = [Float](repeating: 0, count: reduce ? planeCount : 0)
        var planeWeighted = planeSums
        let empty: [Float] = []
        let gradient = outputGradient.data.withUnsafeBufferPointer { dyBuffer in
            (clampInput?.data ?? empty).withUnsafeBufferPointer { clampBuffer in
                (addend?.data ?? empty).withUnsafeBufferPointer { addendBuffer in
                    (normInput?.data ?? empty).withUnsafeBufferPointer { normBuffer in
                        planeSums.withUnsafeMutableBufferPointer { sumsBuffer in
                            planeWeighted.withUnsafeMutableBufferPointer { weightedBuffer in
                                let dy = dyBuffer.baseAddress!
                                let mask = clampInput == nil ? nil : clampBuffer.baseAddress
                                let add = addend == nil ? nil : addendBuffer.baseAddress
                                let x = normInput == nil ? nil : normBuffer.baseAddress
                                let sums = sumsBuffer.baseAddress, weighted = weightedBuffer.baseAddress
                                return TapeKernels.fresh(shape) { target in
                                    TapeKernels.planes(shape: shape.count >= 2 ? shape : [1, 1, outputGradient.count]) { plane, c in
                                        let s = scale?[c] ?? 1
                                        let (lower, upper) = (self.lower, self.upper)
                                        // One loop per case, so that each vectorizes without branches.
                                        switch (mask, add) {
                                        case let (mask?, add?):
                                            for i in plane { target[i] = add[i] + Self.pass(dy[i], where: mask[i], lower, upper) * s }
                                        case let (mask?, nil):
                                            for i in plane { target[i] = Self.pass(dy[i], where: mask[i], lower, upper) * s }
                                        case let (nil, add?):
                                            for i in plane { target[i] = add[i] + dy[i] * s }
                                        case (nil, nil):
                                            for i in plane { target[i] = dy[i] * s }
                                        }
                                        guard let x, let sums, let weighted else { return }
                                        let (sum, products) = TapeKernels.maskedMoments(dy, mask: mask, lower: lower, upper: upper, x,
                                                                                        centre: mean[c], range: plane)
                                        let task = plane.lowerBound / max(plane.count, 1)
                                        sums[task] = sum
                                        weighted[task] = products
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        guard reduce else { return Result(gradient: gradient, sums: nil, weightedSums: nil) }
        // Planes summed in image order, whatever the thread count.
        var sums = [Double](repeating: 0, count: channels), weightedSums = sums
        for task in 0 ..< planeCount {
            sums[task % channels] += Double(planeSums[task])
            weightedSums[task % channels] += Double(planeWeighted[task])
        }
        return Result(gradient: gradient, sums: sums, weightedSums: weightedSums)
    }

    /// `value` where `x` lies strictly inside (lower, upper), else 0 (also for NaN). A bit mask
    /// from the two comparisons rather than a branch, so that the loops vectorize.
    @inline(__always)
    static func pass(_ value: Float, where x: Float, _ lower: Float, _ upper: Float) -> Float {
        let inside: UInt32 = (x > lower ? UInt32.max : 0) & (x < upper ? UInt32.max : 0)
        return Float(bitPattern: value.bitPattern & inside)
    }
}
