/// Forward kernels of the operations that imported graphs add to the ResNet set: channel
/// concatenation, products (squeeze-excite gates, swish) and the `Pointwise` nonlinearities.
extension Kernels {
    /// The inputs joined along the channel axis; all must agree in every other dimension.
    public static func concat(_ inputs: [Tensor]) throws -> Tensor {
        guard let first = inputs.first, first.rank >= 2 else {
            throw ShapeProblem(problem: "concatenation needs at least one (N, C, ...) input")
        }
        let batch = first.shape[0]
        let trailing = Array(first.shape.dropFirst(2))
        for input in inputs where input.rank != first.rank || input.shape[0] != batch || Array(input.shape.dropFirst(2)) != trailing {
            throw ShapeProblem(problem: "cannot join \(inputs.map { describeShape($0.shape) }.joined(separator: " and ")) along channels")
        }
        let plane = trailing.reduce(1, *)
        let channels = inputs.reduce(0) { $0 + $1.shape[1] }
        var output = [Float](repeating: 0, count: batch * channels * plane)
        output.withUnsafeMutableBufferPointer { target in
            var offset = 0
            for input in inputs {
                let block = input.shape[1] * plane
                input.data.withUnsafeBufferPointer { source in
                    for n in 0 ..< batch {
                        let from = source.baseAddress! + n * block
                        (target.baseAddress! + n * channels * plane + offset).update(from: from, count: block)
                    }
                }
                offset += block
            }
        }
        return Tensor(shape: [batch, channels] + trailing, data: output)
    }

    /// `a * b` where b has a's shape, or (N, C, 1, 1) and is broadcast over a's plane.
    public static func multiply(_ a: Tensor, _ b: Tensor) throws -> Tensor {
        var result = a
        if a.shape == b.shape {
            result.data.withUnsafeMutableBufferPointer { target in
                b.data.withUnsafeBufferPointer { other in
                    for i in target.indices { target[i] *= other[i] }
                }
            }
            return result
        }
        guard a.rank == 4, b.rank == 4, b.shape[0] == a.shape[0], b.shape[1] == a.shape[1], b.shape[2] == 1, b.shape[3] == 1 else {
            throw ShapeProblem(problem: "cannot multiply \(describeShape(a.shape)) by \(describeShape(b.shape)); the second factor must have the same shape or be (N, C, 1, 1)")
        }
        let plane = a.shape[2] * a.shape[3]
        result.data.withUnsafeMutableBufferPointer { target in
            b.data.withUnsafeBufferPointer { gate in
                let base = target.baseAddress!
                parallelFor(gate.count) { _, index in
                    let g = gate[index]
                    let row = base + index * plane
                    for i in 0 ..< plane { row[i] *= g }
                }
            }
        }
        return result
    }

    public static func pointwise(_ input: Tensor, _ function: Pointwise) -> Tensor {
        var result = input
        result.data.withUnsafeMutableBufferPointer { buffer in
            for i in buffer.indices { buffer[i] = function.value(buffer[i]) }
        }
        return result
    }
}
