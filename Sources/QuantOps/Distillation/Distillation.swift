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
    /// Weight of the cross-entropy of the model's logits against a target class per image
    /// (class-conditional distillation, as GDFQ and Genie); image i targets class i mod classes.
    /// 0 keeps ZeroQ's statistics-only loss.
    public var crossEntropyWeight: Float
    /// Weight of the total-variation prior (DeepInversion): the mean over neighbouring pixel pairs,
    /// horizontal and vertical, of their squared difference in normalized space.
    public var totalVariationWeight: Float
    /// Weight of the L2 prior: the mean of the squared normalized pixels.
    public var l2Weight: Float
    /// Each step shifts every batch by a random offset of up to this many pixels in each
    /// direction (circularly, as DeepInversion's roll) before the forward pass.
    public var jitter: Int
    /// Each step mirrors the batch left to right with probability 1/2 before the forward pass.
    public var flips: Bool

    public init(samples: Int = 256, steps: Int = 200, learningRate: Float = 0.2, batchSize: Int = 64,
                seed: UInt64 = 0, clampToPixelRange: Bool = true, imageShape: [Int] = Distillation.imageShape,
                crossEntropyWeight: Float = 0, totalVariationWeight: Float = 0, l2Weight: Float = 0,
                jitter: Int = 0, flips: Bool = false) {
        self.samples = samples
        self.steps = steps
        self.learningRate = learningRate
        self.batchSize = batchSize
        self.seed = seed
        self.clampToPixelRange = clampToPixelRange
        self.imageShape = imageShape
        self.crossEntropyWeight = crossEntropyWeight
        self.totalVariationWeight = totalVariationWeight
        self.l2Weight = l2Weight
        self.jitter = jitter
        self.flips = flips
    }

    /// Whether the loss needs the model's logits (the whole forward pass).
    var usesLabels: Bool { crossEntropyWeight > 0 }
    /// Whether the loss has more than ZeroQ's statistics term.
    public var usesPriorsOrLabels: Bool { crossEntropyWeight > 0 || totalVariationWeight > 0 || l2Weight > 0 }
}

/// Reported after every optimization step (one step over every batch).
public struct DistillationProgress: Sendable {
    public var step: Int
    public var steps: Int
    /// Mean over batches of the loss (statistics, plus the cross-entropy and priors asked for)
    /// before this step's update.
    public var loss: Double
    /// Mean over batches of the lowest loss seen so far.
    public var bestLoss: Double
    public var seconds: Double
}

public struct DistillationResult: Sendable {
    /// Normalized images (N, C, H, W): for each batch, the images with the lowest loss seen.
    public var images: Tensor
    /// The loss of the Gaussian start and of the kept images, each a mean over batches.
    public var initialLoss: Double
    public var finalLoss: Double
    /// Steps completed (fewer than asked when interrupted).
    public var stepsCompleted: Int
    public var interrupted: Bool
    public var seconds: Double
}

public struct DistillationError: PrerequisiteFailure, Equatable {
    public var problem: String
    public var remedy: String?
    public var unmet: Prerequisite?

    init(problem: String, remedy: String? = nil, unmet: Prerequisite? = nil) {
        self.problem = problem
        self.remedy = remedy
        self.unmet = unmet
    }

    public var description: String { "distill: \(problem)" + (remedy.map { "; \($0)" } ?? "") }
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
///
/// Options add, each with its weight: the cross-entropy of the logits against a target class per
/// image (class-conditional: GDFQ, Genie), and DeepInversion's image priors (total variation,
/// L2) and augmentations (random circular shifts and horizontal flips before each forward pass,
/// whose gradients are mapped back to the stored images).
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
        for (name, weight) in [("ce", options.crossEntropyWeight), ("tv", options.totalVariationWeight), ("l2", options.l2Weight)] {
            guard weight >= 0, weight.isFinite else {
                throw DistillationError(problem: "\(name) weight \(weight)", remedy: "use a weight >= 0 (0 turns the term off)")
            }
        }
        guard options.jitter >= 0, options.jitter < min(options.imageShape[1], options.imageShape[2]) else {
            throw DistillationError(problem: "jitter \(options.jitter) for \(options.imageShape[1])x\(options.imageShape[2]) images",
                                    remedy: "use a shift between 0 and the image side minus 1")
        }
        let imageShape = options.imageShape
        let targets = try batchNormTargets(model)
        let lastNode = options.usesLabels ? model.nodes.count - 1 : targets.map(\.source).max() ?? 0
        var augmentation = SeededGenerator(seed: options.seed ^ 0x5DEE_CE66_D1CE_B00C)
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
                let pixels = Array(images[range.lowerBound * imageSize ..< range.upperBound * imageSize])
                // The final check scores the stored images as they are, without augmentation.
                let shift = isFinalCheck ? ImageShift.identity : ImageShift.random(jitter: options.jitter, flips: options.flips, using: &augmentation)
                let batch = Tensor(shape: [range.count] + imageShape, data: shift.apply(pixels, shape: imageShape))
                let tape = try GradientTape(model: model, input: batch, through: lastNode)
                var (loss, seeds) = statisticsLoss(tape, targets: targets, wantGradient: !isFinalCheck)
                if options.usesLabels {
                    let classes = tape.output.count / max(range.count, 1)
                    let labels = range.map { $0 % max(classes, 1) }
                    let ce = TeacherLoss.crossEntropy(labels: labels, studentLogits: tape.output)
                    loss += Double(options.crossEntropyWeight) * ce.value
                    if !isFinalCheck {
                        var seed = seeds[lastNode]?.data ?? [Float](repeating: 0, count: tape.output.count)
                        for i in seed.indices { seed[i] += options.crossEntropyWeight * ce.gradient.data[i] }
                        seeds[lastNode] = Tensor(shape: tape.output.shape, data: seed)
                    }
                }
                var priorGradient: [Float]? = nil
                if options.totalVariationWeight > 0 || options.l2Weight > 0 {
                    let tv = totalVariation(pixels, shape: [range.count] + imageShape)
                    let l2 = meanSquare(pixels)
                    loss += Double(options.totalVariationWeight) * tv.value + Double(options.l2Weight) * l2.value
                    priorGradient = zip(tv.gradient, l2.gradient).map { options.totalVariationWeight * $0 + options.l2Weight * $1 }
                }
                losses[batchIndex] = loss
                if step == 0 { initialLoss[batchIndex] = loss }
                if loss < bestLoss[batchIndex] {
                    bestLoss[batchIndex] = loss
                    best.replaceSubrange(range.lowerBound * imageSize ..< range.upperBound * imageSize, with: pixels)
                }
                if isFinalCheck { continue }
                guard let shifted = try tape.backward(seeds: seeds, parameters: false).input else {
                    throw DistillationError(problem: "the model's loss does not depend on its input", remedy: "check the model graph")
                }
                var gradient = Tensor(shape: shifted.shape, data: shift.pullBack(shifted.data, shape: imageShape))
                if let priorGradient {
                    for i in gradient.data.indices { gradient.data[i] += priorGradient[i] }
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
            throw DistillationError(problem: "model \(model.name) has no batch-norm layers to match", unmet: .unfoldedBatchNorms)
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
                    parallelFor(batch * channels) { _, task in
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

    /// Total variation of images (N, C, H, W): the mean over every pair of horizontally or
    /// vertically neighbouring pixels of their squared difference, and its gradient.
    public static func totalVariation(_ images: [Float], shape: [Int]) -> (value: Double, gradient: [Float]) {
        let height = shape[shape.count - 2], width = shape[shape.count - 1]
        let planes = images.count / max(height * width, 1)
        let pairs = planes * (height * (width - 1) + (height - 1) * width)
        var gradient = [Float](repeating: 0, count: images.count)
        guard pairs > 0 else { return (0, gradient) }
        var value = 0.0
        let scale = 2 / Float(pairs)
        for plane in 0 ..< planes {
            let base = plane * height * width
            for y in 0 ..< height {
                for x in 0 ..< width {
                    let i = base + y * width + x
                    if x + 1 < width {
                        let d = images[i] - images[i + 1]
                        value += Double(d * d)
                        gradient[i] += scale * d
                        gradient[i + 1] -= scale * d
                    }
                    if y + 1 < height {
                        let d = images[i] - images[i + width]
                        value += Double(d * d)
                        gradient[i] += scale * d
                        gradient[i + width] -= scale * d
                    }
                }
            }
        }
        return (value / Double(pairs), gradient)
    }

    /// The mean of the squared values, and its gradient 2x / count.
    public static func meanSquare(_ values: [Float]) -> (value: Double, gradient: [Float]) {
        guard !values.isEmpty else { return (0, []) }
        let scale = 2 / Float(values.count)
        return (values.reduce(0.0) { $0 + Double($1 * $1) } / Double(values.count), values.map { scale * $0 })
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



/// A circular shift by (dy, dx) pixels, optionally after a left-right mirror, of every image of
/// a batch (N, C, H, W): DeepInversion's jitter and flip. It permutes pixels, so the gradient
/// with respect to the unshifted images is the shifted gradient permuted back.
public struct ImageShift: Sendable, Equatable {
    public var dy: Int
    public var dx: Int
    public var mirrored: Bool

    public static let identity = ImageShift(dy: 0, dx: 0, mirrored: false)

    public init(dy: Int, dx: Int, mirrored: Bool) {
        self.dy = dy
        self.dx = dx
        self.mirrored = mirrored
    }

    static func random(jitter: Int, flips: Bool, using generator: inout SeededGenerator) -> ImageShift {
        guard jitter > 0 || flips else { return .identity }
        func offset() -> Int { jitter > 0 ? Int(generator.next() % UInt64(2 * jitter + 1)) - jitter : 0 }
        let dy = offset(), dx = offset()
        return ImageShift(dy: dy, dx: dx, mirrored: flips && generator.next() & 1 == 1)
    }

    /// Output pixel (y, x) of each plane reads input pixel (source y, source x).
    func source(y: Int, x: Int, height: Int, width: Int) -> Int {
        let sy = ((y - dy) % height + height) % height
        var sx = ((x - dx) % width + width) % width
        if mirrored { sx = width - 1 - sx }
        return sy * width + sx
    }

    /// The shifted images.
    public func apply(_ images: [Float], shape: [Int]) -> [Float] {
        guard self != .identity else { return images }
        let height = shape[shape.count - 2], width = shape[shape.count - 1], plane = height * width
        var result = [Float](repeating: 0, count: images.count)
        for base in stride(from: 0, to: images.count, by: plane) {
            for y in 0 ..< height {
                for x in 0 ..< width { result[base + y * width + x] = images[base + source(y: y, x: x, height: height, width: width)] }
            }
        }
        return result
    }

    /// The gradient with respect to the unshifted images, from the one with respect to the shifted.
    public func pullBack(_ gradient: [Float], shape: [Int]) -> [Float] {
        guard self != .identity else { return gradient }
        let height = shape[shape.count - 2], width = shape[shape.count - 1], plane = height * width
        var result = [Float](repeating: 0, count: gradient.count)
        for base in stride(from: 0, to: gradient.count, by: plane) {
            for y in 0 ..< height {
                for x in 0 ..< width { result[base + source(y: y, x: x, height: height, width: width)] += gradient[base + y * width + x] }
            }
        }
        return result
    }
}
