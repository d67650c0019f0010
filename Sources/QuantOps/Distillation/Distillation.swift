import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Settings of `distill`.
public struct DistillationOptions: Sendable, Equatable {
    public var samples: Int
    public var steps: Int
    public var learningRate: Float
    /// Images whose batch statistics are matched together; each batch is optimized on its own.
    public var batchSize: Int
    public var seed: UInt64
    /// Keep every pixel inside [0, 1] after de-normalization, so that the images survive being
    /// stored as bytes (the CIFAR layout) without clipping.
    public var clampToPixelRange: Bool
    /// (channels, height, width) of each image; CIFAR's by default.
    public var imageShape: [Int]

    public init(samples: Int = 256, steps: Int = 200, learningRate: Float = 0.2, batchSize: Int = 64,
                seed: UInt64 = 0, clampToPixelRange: Bool = true, imageShape: [Int] = Distillation.imageShape) {
        self.samples = samples
        self.steps = steps
        self.learningRate = learningRate
        self.batchSize = batchSize
        self.seed = seed
        self.clampToPixelRange = clampToPixelRange
        self.imageShape = imageShape
    }
}

/// Reported after every optimization step (one step over every batch).
public struct DistillationProgress: Sendable {
    public var step: Int
    public var steps: Int
    /// Mean over batches of the statistics loss before this step's update.
    public var loss: Double
    /// Mean over batches of the lowest loss seen so far.
    public var bestLoss: Double
    public var seconds: Double
}

public struct DistillationResult: Sendable {
    /// Normalized images (N, C, H, W): for each batch, the images with the lowest loss seen.
    public var images: Tensor
    /// The statistics loss of the Gaussian start and of the kept images, each a mean over batches.
    public var initialLoss: Double
    public var finalLoss: Double
    /// Steps completed (fewer than asked when interrupted).
    public var stepsCompleted: Int
    public var interrupted: Bool
    public var seconds: Double
}

public struct DistillationError: Error, CustomStringConvertible, Equatable {
    public var problem: String
    public var remedy: String

    public var description: String { "distill: \(problem); \(remedy)" }
}

/// ZeroQ-style data distillation: images optimized, from Gaussian noise, so that the input of
/// every batch norm has, over the batch, the mean and standard deviation that the batch norm's
/// running statistics record.
///
/// Loss per batch: sum over BN layers of the mean over channels of
/// `(mu_batch - mu_running)^2 + (sigma_batch - sigma_running)^2`, with
/// `sigma = sqrt(var + eps)` and the batch variance biased (as in PyTorch's normalization).
/// Averaging over channels follows ZeroQ, and keeps layers of different widths on one scale.
/// Pixels are updated by Adam; the model runs in inference mode and is not changed.
public enum Distillation {
    /// A batch norm whose input statistics the loss matches.
    struct Target {
        /// The node whose output the batch norm normalizes.
        var source: Int
        var mean: [Double]
        var sigma: [Double]
        var epsilon: Double
    }

    public static let imageShape = [3, 32, 32]

    public static func run(model: Model, options: DistillationOptions,
                           shouldStop: () -> Bool = { false },
                           progress: (DistillationProgress) -> Void = { _ in }) throws -> DistillationResult {
        let clock = ContinuousClock()
        let start = clock.now
        keepFreedMemoryMapped()
        guard options.samples >= 1, options.steps >= 0, options.batchSize >= 1 else {
            throw DistillationError(problem: "samples=\(options.samples), steps=\(options.steps), batch=\(options.batchSize)",
                                    remedy: "use samples >= 1, steps >= 0 and batch >= 1")
        }
        guard options.learningRate > 0, options.learningRate.isFinite else {
            throw DistillationError(problem: "learning rate \(options.learningRate)", remedy: "use a positive lr such as 0.2")
        }
        guard options.imageShape.count == 3, options.imageShape.allSatisfy({ $0 >= 1 }) else {
            throw DistillationError(problem: "image shape \(options.imageShape)", remedy: "give (channels, height, width)")
        }
        let imageShape = options.imageShape
        let targets = try batchNormTargets(model)
        let lastNode = targets.map(\.source).max() ?? 0
        let imageSize = imageShape.reduce(1, *)
        let (lower, upper) = pixelBounds(model.normalization)

        var images = gaussianImages(count: options.samples, seed: options.seed, imageSize: imageSize)
        let planeSize = imageSize / imageShape[0]
        func project(_ value: Float, at index: Int) -> Float {
            guard options.clampToPixelRange else { return value }
            let channel = (index / planeSize) % imageShape[0]
            return min(max(value, lower[channel % lower.count]), upper[channel % upper.count])
        }
        for i in images.indices { images[i] = project(images[i], at: i) }
        let ranges = stride(from: 0, to: options.samples, by: options.batchSize).map {
            $0 ..< min($0 + options.batchSize, options.samples)
        }

        var best = images
        var bestLoss = [Double](repeating: .infinity, count: ranges.count)
        var initialLoss = [Double](repeating: 0, count: ranges.count)
        var firstMoment = [Float](repeating: 0, count: images.count)
        var secondMoment = [Float](repeating: 0, count: images.count)
        let beta1: Float = 0.9, beta2: Float = 0.999, adamEpsilon: Float = 1e-8
        var completed = 0
        var interrupted = false

        for step in 0 ... options.steps {
            if step > 0 && shouldStop() {
                interrupted = true
                break
            }
            let isFinalCheck = step == options.steps
            var losses = [Double](repeating: 0, count: ranges.count)
            for (batchIndex, range) in ranges.enumerated() {
                let batch = Tensor(shape: [range.count] + imageShape,
                                   data: Array(images[range.lowerBound * imageSize ..< range.upperBound * imageSize]))
                let tape = try GradientTape(model: model, input: batch, through: lastNode)
                let (loss, seeds) = statisticsLoss(tape, targets: targets, wantGradient: !isFinalCheck)
                losses[batchIndex] = loss
                if step == 0 { initialLoss[batchIndex] = loss }
                if loss < bestLoss[batchIndex] {
                    bestLoss[batchIndex] = loss
                    best.replaceSubrange(range.lowerBound * imageSize ..< range.upperBound * imageSize, with: batch.data)
                }
                if isFinalCheck { continue }
                guard let gradient = try tape.backward(seeds: seeds, parameters: false).input else {
                    throw DistillationError(problem: "the model's loss does not depend on its input", remedy: "check the model graph")
                }
                let t = Float(step + 1)
                let correction1 = 1 - pow(beta1, t), correction2 = 1 - pow(beta2, t)
                let stepSize = options.learningRate / correction1
                let offset = range.lowerBound * imageSize
                for i in 0 ..< gradient.count {
                    let g = gradient.data[i]
                    let k = offset + i
                    firstMoment[k] = beta1 * firstMoment[k] + (1 - beta1) * g
                    secondMoment[k] = beta2 * secondMoment[k] + (1 - beta2) * g * g
                    let value = images[k] - stepSize * firstMoment[k] / ((secondMoment[k] / correction2).squareRoot() + adamEpsilon)
                    images[k] = project(value, at: k)
                }
            }
            // The final check only scores the last update; the last step already reported.
            if isFinalCheck { break }
            completed = step + 1
            progress(DistillationProgress(step: step + 1, steps: options.steps, loss: losses.reduce(0, +) / Double(ranges.count),
                                          bestLoss: bestLoss.reduce(0, +) / Double(ranges.count),
                                          seconds: (clock.now - start).seconds))
        }
        return DistillationResult(images: Tensor(shape: [options.samples] + imageShape, data: best),
                                  initialLoss: initialLoss.reduce(0, +) / Double(ranges.count),
                                  finalLoss: bestLoss.reduce(0, +) / Double(ranges.count),
                                  stepsCompleted: completed, interrupted: interrupted,
                                  seconds: (clock.now - start).seconds)
    }

    /// Every step allocates and frees the same few hundred megabytes of activations. glibc would
    /// hand the larger blocks back to the kernel on each free and fault them in again, zeroed,
    /// on the next step; keeping them in the heap saves that work.
    static func keepFreedMemoryMapped() {
        #if canImport(Glibc)
        // malloc.h is not part of the Glibc module; its constants are M_TRIM_THRESHOLD = -1 and
        // M_MMAP_THRESHOLD = -3.
        typealias MallocOption = @convention(c) (Int32, Int32) -> Int32
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "mallopt") else { return }
        let mallopt = unsafeBitCast(symbol, to: MallocOption.self)
        _ = mallopt(-3, 256 << 20)
        _ = mallopt(-1, 1 << 30)
        #endif
    }

    /// The batch norms of the model and the nodes whose outputs they normalize.
    static func batchNormTargets(_ model: Model) throws -> [Target] {
        let targets = model.nodes.indices.compactMap { index -> Target? in
            guard case .batchNorm(let norm) = model.nodes[index].operation, let source = model.nodes[index].inputs.first else {
                return nil
            }
            let epsilon = Double(norm.epsilon)
            return Target(source: source, mean: norm.runningMean.data.map(Double.init),
                          sigma: norm.runningVar.data.map { (Double($0) + epsilon).squareRoot() }, epsilon: epsilon)
        }
        guard !targets.isEmpty else {
            throw DistillationError(problem: "model \(model.name) has no batch-norm layers to match",
                                    remedy: "distill from the float model before 'fold bn'")
        }
        return targets
    }

    /// The loss of one batch and its gradient with respect to every batch norm's input:
    /// d/dx = 2/C * ((mu - mu_r) / M + (sigma - sigma_r) * (x - mu) / (M * sigma)) per channel,
    /// M values per channel.
    static func statisticsLoss(_ tape: GradientTape, targets: [Target], wantGradient: Bool) -> (Double, [Int: Tensor]) {
        var loss = 0.0
        var seeds: [Int: Tensor] = [:]
        for target in targets {
            let input = tape.outputs[target.source]
            let channels = target.mean.count
            let batch = input.shape[0]
            let plane = input.count / max(batch * channels, 1)
            let count = Double(batch * plane)
            let statistics = GradientTape.channelMoments(input, channels: channels)
            var meanCoefficient = [Float](repeating: 0, count: channels)
            var spreadCoefficient = [Float](repeating: 0, count: channels)
            var layerLoss = 0.0
            for c in 0 ..< channels {
                let sigma = (statistics.variance[c] + target.epsilon).squareRoot()
                let meanError = statistics.mean[c] - target.mean[c]
                let sigmaError = sigma - target.sigma[c]
                layerLoss += meanError * meanError + sigmaError * sigmaError
                meanCoefficient[c] = Float(2 / Double(channels) * meanError / count)
                spreadCoefficient[c] = Float(2 / Double(channels) * sigmaError / (count * sigma))
            }
            loss += layerLoss / Double(channels)
            guard wantGradient else { continue }
            var gradient = seeds[target.source]?.data ?? [Float](repeating: 0, count: input.count)
            let means = statistics.mean.map { Float($0) }
            input.data.withUnsafeBufferPointer { x in
                gradient.withUnsafeMutableBufferPointer { g in
                    let xBase = x.baseAddress!, gBase = g.baseAddress!
                    OpenMPTeam.parallelFor(batch * channels) { _, task in
                        let c = task % channels
                        let a = meanCoefficient[c], b = spreadCoefficient[c], m = means[c]
                        let base = task * plane
                        for i in base ..< base + plane { gBase[i] += a + b * (xBase[i] - m) }
                    }
                }
            }
            seeds[target.source] = Tensor(shape: input.shape, data: gradient)
        }
        return (loss, seeds)
    }

    /// Standard normal pixels in normalized space (ZeroQ's starting point), generated image by
    /// image so that the same seed gives the same images whatever the batch size.
    public static func gaussianImages(count: Int, seed: UInt64, imageSize: Int = CIFAR10.imageSize) -> [Float] {
        var generator = SeededGenerator(seed: seed)
        var values = [Float](repeating: 0, count: count * imageSize)
        var i = 0
        while i < values.count {
            // Box-Muller: two uniforms in (0, 1] give two independent normals.
            let u1 = 1 - generator.nextUnit(), u2 = generator.nextUnit()
            let radius = (-2 * log(u1)).squareRoot()
            values[i] = Float(radius * cos(2 * Double.pi * u2))
            if i + 1 < values.count { values[i + 1] = Float(radius * sin(2 * Double.pi * u2)) }
            i += 2
        }
        return values
    }

    /// The normalized values of pixel 0 and pixel 1 per channel.
    static func pixelBounds(_ normalization: Normalization) -> (lower: [Float], upper: [Float]) {
        let (mean, std) = channelNormalization(normalization)
        return ((0 ..< 3).map { (0 - mean[$0]) / std[$0] }, (0 ..< 3).map { (1 - mean[$0]) / std[$0] })
    }

    static func channelNormalization(_ normalization: Normalization) -> (mean: [Float], std: [Float]) {
        let mean = normalization.mean.count == 3 ? normalization.mean : [Float](repeating: normalization.mean.first ?? 0, count: 3)
        let std = normalization.std.count == 3 ? normalization.std : [Float](repeating: normalization.std.first ?? 1, count: 3)
        return (mean, std)
    }

    /// Normalized images as a data set: de-normalized, rounded to bytes, and labelled with the
    /// class `model` predicts for the stored (rounded) images. CIFAR-sized images of a ten-class
    /// model are CIFAR-10 records (so 'save data' writes them); others keep their size.
    public static func dataset(named name: String, images: Tensor, model: Model, batchSize: Int = 250) throws -> any LabeledImages {
        guard images.rank == 4, images.shape[1] == 3 else {
            throw DistillationError(problem: "images \(images.shape) are not (N, 3, H, W)", remedy: "distill RGB images")
        }
        let shape = ImageShape(channels: 3, height: images.shape[2], width: images.shape[3])
        let (mean, std) = channelNormalization(model.normalization)
        let plane = shape.height * shape.width
        let pixels = images.data.indices.map { i -> UInt8 in
            let channel = (i / plane) % 3
            let value = ((images.data[i] * std[channel] + mean[channel]) * 255).rounded()
            return UInt8(min(max(value, 0), 255))
        }
        let count = images.shape[0]
        let unlabelled = try ByteImages(name: name, imageShape: shape, classCount: 1, labels: [Int](repeating: 0, count: count), pixels: pixels)
        var labels: [Int] = []
        var classes = 1
        labels.reserveCapacity(count)
        for start in stride(from: 0, to: count, by: max(1, batchSize)) {
            let indices = start ..< min(start + max(1, batchSize), count)
            let logits = try ForwardPass.logits(model, input: unlabelled.batch(indices, normalization: model.normalization))
            classes = logits.shape[1]
            for row in 0 ..< indices.count {
                let scores = logits.data[row * classes ..< (row + 1) * classes]
                labels.append(scores.indices.max { scores[$0] < scores[$1] }.map { $0 - row * classes } ?? 0)
            }
        }
        if shape == ImageShape(channels: 3, height: 32, width: 32), classes <= CIFAR10.classes {
            return try CIFAR10(name: name, labels: labels.map { UInt8($0) }, pixels: pixels)
        }
        return try ByteImages(name: name, imageShape: shape, classCount: classes, labels: labels, pixels: pixels)
    }
}

