import Foundation

/// How far `recalibrate bn` moved each batch norm's statistics.
public struct RecalibrationReport: Sendable, Equatable {
    public struct Layer: Sendable, Equatable {
        public var name: String
        public var channels: Int
        /// Mean over channels of |mu' - mu| / sqrt(var + eps), in units of the old standard deviation.
        public var meanShift: Double
        /// Mean over channels of |log((var' + eps) / (var + eps))|; 0.69 means a typical factor of 2.
        public var logVarianceChange: Double
    }

    public var layers: [Layer]
    public var samples: Int
    public var seconds: Double

    public var meanShift: Double { layers.isEmpty ? 0 : layers.map(\.meanShift).reduce(0, +) / Double(layers.count) }
    public var logVarianceChange: Double {
        layers.isEmpty ? 0 : layers.map(\.logVarianceChange).reduce(0, +) / Double(layers.count)
    }

    /// The layer whose mean moved most, for a one-line summary.
    public var largestShift: Layer? { layers.max { $0.meanShift < $1.meanShift } }

    public var summary: String {
        var text = String(format: "re-estimated %d BN layers from %d images in %.2f s: mean |d mu|/sigma %.3f, mean |log var ratio| %.3f",
                          layers.count, samples, seconds, meanShift, logVarianceChange)
        if let largest = largestShift {
            text += "; largest shift \(largest.name) (" + String(format: "%.3f", largest.meanShift) + ")"
        }
        return text
    }
}

/// `recalibrate bn`: exact population statistics of every batch norm's input over all samples.
///
/// The graph is walked node by node over the whole sample set, so that each batch norm's new
/// statistics are measured on inputs already produced with the new statistics of the batch norms
/// before it, and evaluated in eval mode. Nothing depends on how the samples are split into
/// batches; `batchSize` only bounds the size of each kernel call.
public enum BatchNormRecalibration {
    /// Largest estimated memory for the activations of the whole sample set.
    static let memoryLimitBytes = 6 << 30

    public static func run(_ model: inout Model, images: Tensor, batchSize: Int,
                           shouldStop: () -> Bool = { false }) throws -> RecalibrationReport
    {
        let clock = ContinuousClock()
        let start = clock.now
        let normNodes = model.nodes.indices.filter {
            if case .batchNorm = model.nodes[$0].operation { return true } else { return false }
        }
        guard !normNodes.isEmpty else {
            throw QuantizationError(place: "recalibrate bn", problem: "model \(model.name) has no batch-norm nodes",
                                    unmet: .unfoldedBatchNorms)
        }
        guard batchSize >= 1 else {
            throw QuantizationError(place: "recalibrate bn", problem: "batch size \(batchSize)", remedy: "use 1 or more")
        }
        guard images.rank == 4, images.shape[0] >= 1 else {
            throw QuantizationError(place: "recalibrate bn", problem: "expected images (N, C, H, W), got \(images.shape)")
        }
        let sampleCount = images.shape[0]
        try checkMemory(model, images: images)

        var updated = model
        var layers: [RecalibrationReport.Layer] = []
        var outputs = [Tensor?](repeating: nil, count: model.nodes.count)
        let lastUse = lastConsumers(model)
        for index in model.nodes.indices {
            if shouldStop() {
                throw QuantizationError(place: "recalibrate bn", problem: "interrupted",
                                        remedy: "the batch-norm statistics were left unchanged")
            }
            let node = updated.nodes[index]
            var inputs: [Tensor] = []
            for source in node.inputs {
                guard source >= 0, source < index, let value = outputs[source] else {
                    throw QuantizationError(place: node.name, problem: "input \(source) is not an earlier node")
                }
                inputs.append(value)
            }
            if case .batchNorm(var norm) = node.operation {
                let old = norm
                try measure(inputs[0], into: &norm, node: node.name)
                updated.nodes[index].operation = .batchNorm(norm)
                layers.append(movement(from: old, to: norm, name: node.name))
            }
            outputs[index] = node.operation == .input ? images
                : try evaluateInChunks(updated.nodes[index], inputs: inputs, batchSize: batchSize)
            for source in node.inputs where lastUse[source] == index { outputs[source] = nil }
        }
        model = updated
        return RecalibrationReport(layers: layers, samples: sampleCount, seconds: (clock.now - start).seconds)
    }

    /// Per-channel mean and unbiased variance (PyTorch's running_var convention) over batch and
    /// space, two-pass in Double.
    static func measure(_ input: Tensor, into norm: inout BatchNorm, node: String) throws {
        guard input.rank >= 2, input.shape[1] == norm.channels else {
            throw QuantizationError(place: node, problem: "input \(input.shape) does not have \(norm.channels) channels")
        }
        let batch = input.shape[0]
        let channels = norm.channels
        let spatial = input.count / max(batch * channels, 1)
        let perChannel = batch * spatial
        guard perChannel >= 2 else {
            throw QuantizationError(place: node, problem: "one value per channel has no variance",
                                    remedy: "use more samples")
        }
        var means = [Double](repeating: 0, count: channels)
        var variances = [Double](repeating: 0, count: channels)
        input.data.withUnsafeBufferPointer { x in
            means.withUnsafeMutableBufferPointer { meanOut in
                variances.withUnsafeMutableBufferPointer { varianceOut in
                    // Each channel writes only its own slot.
                    parallelFor(channels) { _, c in
                        var sum = 0.0
                        for n in 0..<batch {
                            let base = (n * channels + c) * spatial
                            for k in base ..< base + spatial { sum += Double(x[k]) }
                        }
                        let mean = sum / Double(perChannel)
                        var squares = 0.0
                        for n in 0..<batch {
                            let base = (n * channels + c) * spatial
                            for k in base ..< base + spatial {
                                let d = Double(x[k]) - mean
                                squares += d * d
                            }
                        }
                        meanOut[c] = mean
                        varianceOut[c] = squares / Double(perChannel - 1)
                    }
                }
            }
        }
        norm.runningMean = Tensor(shape: norm.runningMean.shape, data: means.map { Float($0) })
        norm.runningVar = Tensor(shape: norm.runningVar.shape, data: variances.map { Float($0) })
    }

    static func movement(from old: BatchNorm, to new: BatchNorm, name: String) -> RecalibrationReport.Layer {
        var shift = 0.0
        var logChange = 0.0
        let eps = Double(old.epsilon)
        for c in 0..<old.channels {
            let oldVar = Double(old.runningVar.data[c]) + eps
            let newVar = Double(new.runningVar.data[c]) + eps
            shift += abs(Double(new.runningMean.data[c]) - Double(old.runningMean.data[c])) / oldVar.squareRoot()
            logChange += abs(log(newVar / oldVar))
        }
        let count = Double(max(old.channels, 1))
        return RecalibrationReport.Layer(name: name, channels: old.channels, meanShift: shift / count,
                                         logVarianceChange: logChange / count)
    }

    /// Convolutions run `batchSize` images at a time, as their scratch memory grows with the batch;
    /// element-wise and pooling nodes run on the whole set at once, which saves splitting and joining it.
    static func evaluateInChunks(_ node: Node, inputs: [Tensor], batchSize: Int) throws -> Tensor {
        guard case .conv = node.operation, let total = inputs.first?.shape.first, total > batchSize else {
            return try ForwardPass.evaluate(node, inputs: inputs)
        }
        var pieces: [Tensor] = []
        for start in Swift.stride(from: 0, to: total, by: batchSize) {
            let end = min(start + batchSize, total)
            pieces.append(try ForwardPass.evaluate(node, inputs: inputs.map { rows($0, start ..< end) }))
        }
        var data: [Float] = []
        data.reserveCapacity(pieces.reduce(0) { $0 + $1.count })
        for piece in pieces { data += piece.data }
        return Tensor(shape: [total] + pieces[0].shape.dropFirst(), data: data)
    }

    static func rows(_ tensor: Tensor, _ range: Range<Int>) -> Tensor {
        let rowSize = tensor.count / max(tensor.shape[0], 1)
        return Tensor(shape: [range.count] + tensor.shape.dropFirst(),
                      data: Array(tensor.data[range.lowerBound * rowSize ..< range.upperBound * rowSize]))
    }

    /// For every node, the last node that reads it (the model's output is never released).
    static func lastConsumers(_ model: Model) -> [Int] {
        var last = [Int](repeating: model.nodes.count, count: model.nodes.count)
        var seen = [Bool](repeating: false, count: model.nodes.count)
        for (index, node) in model.nodes.enumerated() {
            for source in node.inputs where source >= 0 && source < model.nodes.count {
                last[source] = index
                seen[source] = true
            }
        }
        for index in last.indices where !seen[index] { last[index] = model.nodes.count }
        return last
    }

    /// Measures one image's activations and refuses sample sets whose live activations would not fit.
    static func checkMemory(_ model: Model, images: Tensor) throws {
        let one = rows(images, 0 ..< 1)
        var sizes = [Int](repeating: 0, count: model.nodes.count)
        _ = try ForwardPass.run(model, input: one, observing: Set(model.nodes.indices)) { index, output in sizes[index] = output.count }
        let lastUse = lastConsumers(model)
        var live = 0
        var peak = 0
        for index in model.nodes.indices {
            live += sizes[index]
            peak = max(peak, live)
            for source in model.nodes[index].inputs where lastUse[source] == index { live -= sizes[source] }
        }
        // Chunked evaluation holds the pieces and their concatenation at once.
        let bytesPerImage = max(peak, 1) * 4 * 2
        let samples = images.shape[0]
        if samples * bytesPerImage > memoryLimitBytes {
            throw QuantizationError(place: "recalibrate bn",
                                    problem: "\(samples) images need about \((samples * bytesPerImage) >> 20) MiB of activations",
                                    remedy: "use samples=\(memoryLimitBytes / bytesPerImage) or fewer")
        }
    }
}
