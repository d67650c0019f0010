/// Elementwise and per-channel kernels of the gradient tape on NCHW tensors: the forward
/// maps write a fresh tensor in one pass (no copy-then-modify), the backward ones work in
/// place on a gradient the tape owns. All split the work over `EngineSettings.threads`; none
/// reduces across workers, so results do not depend on the thread count. They run on the
/// OpenMP team of the oneDNN convolutions between them (`OpenMPTeam`).
enum TapeKernels {
    /// Below this many values one thread is faster than waking others.
    static let parallelThreshold = 1 << 15

    /// Calls `body` on contiguous ranges covering `0..<count`, one per worker.
    static func chunks(_ count: Int, _ body: (Range<Int>) -> Void) {
        let workers = count >= parallelThreshold ? workerCount(for: count) : 1
        guard workers > 1 else { return body(0 ..< count) }
        let size = (count + workers - 1) / workers
        parallelFor(workers) { _, worker in body(worker * size ..< min(count, (worker + 1) * size)) }
    }

    /// Calls `body(plane, channel)` for every (image, channel) plane of an NCHW tensor.
    static func planes(_ tensor: Tensor, _ body: (_ plane: Range<Int>, _ channel: Int) -> Void) {
        planes(shape: tensor.shape, body)
    }

    /// A fresh tensor of `shape` whose values `fill` writes.
    static func fresh(_ shape: [Int], _ fill: (UnsafeMutablePointer<Float>) -> Void) -> Tensor {
        let count = shape.reduce(1, *)
        let data = [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
            if let base = buffer.baseAddress { fill(base) }
            initialized = count
        }
        return Tensor(shape: shape, data: data)
    }

    /// `x * scale[c] + shift[c]` per channel.
    static func affine(_ input: Tensor, scale: [Float], shift: [Float]) -> Tensor {
        input.data.withUnsafeBufferPointer { xBuffer in
            let x = xBuffer.baseAddress!
            return fresh(input.shape) { target in
                planes(input) { plane, c in
                    let s = scale[c], t = shift[c]
                    for i in plane { target[i] = x[i] * s + t }
                }
            }
        }
    }

    /// `x * scale[c] + shift[c]`, and that clamped to [lower, upper], in one pass.
    static func affine(_ input: Tensor, scale: [Float], shift: [Float], thenClampTo lower: Float,
                       _ upper: Float) -> (Tensor, Tensor) {
        var clamped: [Float] = []
        let normalized = input.data.withUnsafeBufferPointer { xBuffer in
            let x = xBuffer.baseAddress!
            return fresh(input.shape) { target in
                clamped = [Float](unsafeUninitializedCapacity: input.count) { clampedBuffer, initialized in
                    let second = clampedBuffer.baseAddress!
                    planes(input) { plane, c in
                        let s = scale[c], t = shift[c]
                        for i in plane {
                            let y = x[i] * s + t
                            target[i] = y
                            second[i] = min(max(y, lower), upper)
                        }
                    }
                    initialized = input.count
                }
            }
        }
        return (normalized, Tensor(shape: input.shape, data: clamped))
    }

    /// `target += other`, in place (a copy first only if `target` shares its storage).
    static func accumulate(_ target: inout Tensor, _ other: Tensor) throws {
        guard target.shape == other.shape else {
            throw ShapeProblem(problem: "cannot add \(describeShape(target.shape)) and \(describeShape(other.shape))")
        }
        other.data.withUnsafeBufferPointer { otherBuffer in
            target.data.withUnsafeMutableBufferPointer { targetBuffer in
                let y = otherBuffer.baseAddress!, x = targetBuffer.baseAddress!
                chunks(targetBuffer.count) { range in
                    for i in range { x[i] += y[i] }
                }
            }
        }
    }

    /// Multiplies each channel by `scale[c]`, in place.
    static func scaleChannels(_ tensor: inout Tensor, scale: [Float]) {
        let shape = tensor.shape
        tensor.data.withUnsafeMutableBufferPointer { buffer in
            let x = buffer.baseAddress!
            planes(shape: shape) { plane, c in
                let s = scale[c]
                for i in plane { x[i] *= s }
            }
        }
    }

    /// `planes(_:_:)` by shape, for a tensor that is being written and so cannot be passed itself.
    static func planes(shape: [Int], _ body: (_ plane: Range<Int>, _ channel: Int) -> Void) {
        let batch = shape[0], channels = shape[1]
        let count = shape.reduce(1, *)
        let size = count / max(batch * channels, 1)
        if count >= parallelThreshold {
            parallelFor(batch * channels) { _, task in body(task * size ..< (task + 1) * size, task % channels) }
        } else {
            for task in 0 ..< batch * channels { body(task * size ..< (task + 1) * size, task % channels) }
        }
    }

    /// Over `range`: the sum of g and of g * (x - centre), where g is `values` kept only where
    /// `mask` (when given) lies strictly inside (lower, upper). Eight lanes, then the lanes and
    /// the tail in a fixed order, so the result depends on the data alone.
    @inline(__always)
    static func maskedMoments(_ values: UnsafePointer<Float>, mask: UnsafePointer<Float>?, lower: Float, upper: Float,
                              _ x: UnsafePointer<Float>, centre: Float, range: Range<Int>) -> (sum: Float, weighted: Float) {
        typealias Lanes = SIMD8<Float>
        var sums = Lanes(), weighted = Lanes()
        let centres = Lanes(repeating: centre), lowers = Lanes(repeating: lower), uppers = Lanes(repeating: upper)
        var i = range.lowerBound
        while i + Lanes.scalarCount <= range.upperBound {
            var g = UnsafeRawPointer(values + i).loadUnaligned(as: Lanes.self)
            if let mask {
                let m = UnsafeRawPointer(mask + i).loadUnaligned(as: Lanes.self)
                g.replace(with: 0, where: .!((m .> lowers) .& (m .< uppers)))
            }
            sums += g
            weighted += g * (UnsafeRawPointer(x + i).loadUnaligned(as: Lanes.self) - centres)
            i += Lanes.scalarCount
        }
        var sum: Float = 0, products: Float = 0
        for lane in 0 ..< Lanes.scalarCount {
            sum += sums[lane]
            products += weighted[lane]
        }
        while i < range.upperBound {
            let g = mask.map { ElementwiseBackward.pass(values[i], where: $0[i], lower, upper) } ?? values[i]
            sum += g
            products += g * (x[i] - centre)
            i += 1
        }
        return (sum, products)
    }

    /// The sum of `values[range]` and of `(values[range] - centre)^2`, eight lanes at a time,
    /// then the lanes and the tail in a fixed order.
    static func planeMoments(_ values: UnsafePointer<Float>, centre: Float, range: Range<Int>) -> (sum: Float, squares: Float) {
        typealias Lanes = SIMD8<Float>
        var sums = Lanes(), squares = Lanes()
        let centres = Lanes(repeating: centre)
        var i = range.lowerBound
        while i + Lanes.scalarCount <= range.upperBound {
            let x = UnsafeRawPointer(values + i).loadUnaligned(as: Lanes.self)
            sums += x
            let d = x - centres
            squares += d * d
            i += Lanes.scalarCount
        }
        var sum: Float = 0, square: Float = 0
        for lane in 0 ..< Lanes.scalarCount {
            sum += sums[lane]
            square += squares[lane]
        }
        while i < range.upperBound {
            sum += values[i]
            square += (values[i] - centre) * (values[i] - centre)
            i += 1
        }
        return (sum, square)
    }
}
