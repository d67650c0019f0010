import Foundation

/// What the student is trained to match.
public enum FinetuneLoss: String, Sendable, CaseIterable {
    /// KL divergence to the teacher's output distribution only (AIT).
    case kl
    /// KL plus cross-entropy on the data set's labels, weights 1 and 1 (GDFQ-like; GDFQ weighs them
    /// (1 - delta) CE + delta KL and takes its generator's labels).
    case klPlusCrossEntropy = "kl+ce"
    /// GDFQ's loss: (1 - delta) CE + delta KL, the cross-entropy on the data set's labels.
    case gdfq
}

/// Settings of `finetune ait` (methods.md §5; the defaults are the paper's CIFAR settings).
public struct FinetuneOptions: Sendable, Equatable {
    public var epochs: Int
    public var learningRate: Float
    public var momentum: Float
    public var weightDecay: Float
    public var batchSize: Int
    public var seed: UInt64
    public var loss: FinetuneLoss
    /// Gradient inundation on or off.
    public var inundation: Bool
    /// The fraction of each quantized layer's integer weights inundation aims to change per step.
    public var rho: Double
    /// Epochs (counted from the first, across resumes) during which kappa is capped at 128.
    public var warmUpEpochs: Int
    /// rho is multiplied by `rhoDecay` every `rhoDecayEvery` epochs.
    public var rhoDecay: Double
    public var rhoDecayEvery: Int
    /// The weight of KL in `loss=gdfq`, (1 - delta) CE + delta KL.
    public var delta: Double
    /// Augmentation of every training batch: a random shift of up to `jitter` pixels in each
    /// direction (the vacated pixels zero, the normalized mean, as a padded random crop) and,
    /// with `flips`, a random left-right mirror per image. The teacher's targets are then computed
    /// on the augmented batch, so each epoch trains on new views of the same images.
    public var jitter: Int
    public var flips: Bool
    /// Batch norms normalize each training batch by its own statistics (as in training mode), and
    /// every measured state (the start, each epoch's end, the kept one) has its running
    /// statistics re-estimated on all the training images first, so that the deployed
    /// normalization follows the weights as they move. Off: the running statistics stay fixed.
    public var batchStatistics: Bool

    var augments: Bool { jitter > 0 || flips }

    public init(epochs: Int = 1, learningRate: Float = 1e-4, momentum: Float = 0.9, weightDecay: Float = 0,
                batchSize: Int = 64, seed: UInt64 = 0, loss: FinetuneLoss = .kl, inundation: Bool = true,
                rho: Double = 1e-3, warmUpEpochs: Int = 1, rhoDecay: Double = 0.1, rhoDecayEvery: Int = 100, delta: Double = 0.5,
                jitter: Int = 0, flips: Bool = false, batchStatistics: Bool = false) {
        self.epochs = epochs
        self.learningRate = learningRate
        self.momentum = momentum
        self.weightDecay = weightDecay
        self.batchSize = batchSize
        self.seed = seed
        self.loss = loss
        self.inundation = inundation
        self.rho = rho
        self.warmUpEpochs = warmUpEpochs
        self.rhoDecay = rhoDecay
        self.rhoDecayEvery = rhoDecayEvery
        self.delta = delta
        self.jitter = jitter
        self.flips = flips
        self.batchStatistics = batchStatistics
    }

    /// rho during epoch `epoch` (0-based): exponential step decay, as a learning-rate schedule.
    public func rho(atEpoch epoch: Int) -> Double {
        rho * pow(rhoDecay, Double(epoch / max(rhoDecayEvery, 1)))
    }
}

/// How one quantized layer's integer weights moved during an epoch.
public struct LayerUpdates: Sendable, Equatable {
    /// The layer's number (from 1, in execution order).
    public var layer: Int
    public var name: String
    public var weights: Int
    /// Integer weights that changed, summed over the epoch's steps.
    public var changed: Int
    /// Mean over steps of inundation's kappa (1 without inundation).
    public var meanKappa: Double

    /// The fraction of the layer's weights that changed per step, on average.
    public func changedFraction(steps: Int) -> Double {
        steps > 0 && weights > 0 ? Double(changed) / Double(steps) / Double(weights) : 0
    }
}

/// One epoch's report.
public struct FinetuneEpoch: Sendable {
    /// 1-based, counted across resumes.
    public var epoch: Int
    public var steps: Int
    /// Mean training loss and KL over the epoch's steps (the weights move during the epoch).
    public var trainingLoss: Double
    public var trainingKL: Double
    /// KL of the end-of-epoch student against the teacher over the whole data set.
    public var kl: Double
    /// Images whose top class the student and the teacher agree on, in percent.
    public var agreement: Double
    /// The same two on the held-out validation images, when there are some.
    public var validation: (kl: Double, agreement: Double)?
    public var rho: Double
    public var layers: [LayerUpdates]
    /// Seconds of training steps, without the end-of-epoch KL pass.
    public var seconds: Double
    public var imagesPerSecond: Double

    public var changedPerStep: Double {
        steps > 0 ? Double(layers.reduce(0) { $0 + $1.changed }) / Double(steps) : 0
    }
}

/// Everything training needs to continue: float master weights and momentum, by parameter.
public struct FinetuneCheckpoint: Sendable, Equatable {
    public var master: [[Float]]
    public var velocity: [[Float]]
    public var epochsCompleted: Int
    /// The KL of this state over the training data.
    public var kl: Double
    /// The KL of this state over the validation data, when there is some.
    public var validationKL: Double? = nil

    /// What the kept state is chosen by: held-out KL when there is some, else training KL.
    var selectionKL: Double { validationKL ?? kl }
}

public struct FinetuneOutcome: Sendable {
    /// The kept state (lowest KL, on the validation images when given, among the start and the
    /// completed epochs), re-quantized.
    public var model: Model
    public var kept: FinetuneCheckpoint
    /// The newest state, which may be worse than the kept one.
    public var latest: FinetuneCheckpoint
    public var initialKL: Double
    public var initialAgreement: Double
    public var initialValidation: (kl: Double, agreement: Double)?
    public var epochs: [FinetuneEpoch]
    public var interrupted: Bool
    public var seconds: Double
}

public struct FinetuneError: Error, CustomStringConvertible, Equatable {
    public var problem: String
    public var remedy: String

    public var description: String { "finetune: \(problem); \(remedy)" }
}

/// Quantization-aware fine-tuning of a quantized student against its float teacher.
///
/// The student keeps float master weights; every step the quantized layers' weights are
/// projected onto their fixed grids (activations stay fake-quantized where the model has
/// quantizers), gradients flow back by the straight-through estimator and SGD with Nesterov
/// momentum updates the masters. Batch norms keep their running statistics (inference mode), so
/// that the student's normalization matches what it is deployed with; their affine parameters,
/// biases and float layers train too. At the end the weights are re-quantized on their grids.
public struct QuantizationAwareTraining: Sendable {
    /// One trained tensor of the student.
    public struct Parameter: Sendable {
        public enum Role: Sendable {
            case weight, bias
            /// The step size of a fake-quantized activation, whose range then trains (LSQ).
            case activationStepSize
        }
        public var node: Int
        public var role: Role
        /// The weight layer's number (from 1), for weights of conv and linear layers.
        public var layer: Int?
        public var name: String
        /// Set for weights of quantized layers.
        public var grid: WeightGrid?
    }

    public let student: Model
    public let teacher: Model
    public let parameters: [Parameter]
    /// Whether activation step sizes are among the parameters, so the tape must form their gradients.
    var trainsActivationRanges: Bool { parameters.contains { $0.role == .activationStepSize } }
    /// Quantized layers whose master weights start from the teacher's float weights (the rest
    /// start from their quantized values, when the teacher's weights do not round to them).
    public let layersFromTeacher: Int
    /// Quantized layers whose student codes are a monotone function of the teacher's weights
    /// (ternary thresholds, DoReFa's tanh) but not their rounding on the grid: their masters are
    /// placed inside their codes' bins in the order of the teacher's weights (`placeInBins`).
    public let layersPlacedFromTeacher: Int
    let startingMaster: [[Float]]

    /// With `learnsActivationRanges`, every fake-quantized activation between layers trains its
    /// step size (its range, the zero point kept) by LSQ's gradient, scaled by
    /// 1 / sqrt(elements per image x highest level) as LSQ does; the quantizer on the input image
    /// keeps its range.
    public init(student: Model, teacher: Model, learnsActivationRanges: Bool = false) throws {
        guard !student.nodes.isEmpty, !teacher.nodes.isEmpty else {
            throw FinetuneError(problem: "an empty model", remedy: "load a model first")
        }
        var parameters: [Parameter] = []
        var master: [[Float]] = []
        var fromTeacher = 0, placedFromTeacher = 0
        let teacherNodes = Dictionary(teacher.nodes.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        let layerNumbers = Dictionary(uniqueKeysWithValues: student.weightLayerNodes.enumerated().map { ($1, $0 + 1) })
        for (index, node) in student.nodes.enumerated() {
            let weight: Tensor, bias: Tensor?, precision: WeightPrecision
            if let layer = node.operation.weightLayer {
                (weight, bias, precision) = (layer.weight, layer.bias, layer.precision)
            } else if case .batchNorm(let norm) = node.operation {
                (weight, bias, precision) = (norm.gamma, norm.beta, .float32)
            } else {
                continue
            }
            let grid = WeightGrid(precision: precision, count: weight.count, outputChannels: weight.shape.first ?? 1)
            if precision.isQuantized && grid == nil {
                throw FinetuneError(problem: "layer \(node.name) has a \(precision.label) grid that does not fit its \(describeShape(weight.shape)) weights",
                                    remedy: "quantize the layer again")
            }
            var start = weight.data
            if let grid, let teacherWeight = teacherNodes[node.name]?.operation.weightLayer?.weight, teacherWeight.shape == weight.shape {
                // The teacher's float weights are the natural masters when they round to the
                // student's values; after compensation or equalization they no longer do.
                let projected = grid.project(teacherWeight.data)
                let agreeing = zip(projected, weight.data).filter { abs($0 - $1) <= 1e-6 * max(abs($1), 1) }.count
                if Double(agreeing) >= 0.99 * Double(weight.count) {
                    start = teacherWeight.data
                    fromTeacher += 1
                } else if let placed = Self.placeInBins(teacher: teacherWeight.data, codes: grid.codes(weight.data), grid: grid) {
                    start = placed
                    placedFromTeacher += 1
                }
            }
            parameters.append(Parameter(node: index, role: .weight, layer: layerNumbers[index], name: node.name, grid: grid))
            master.append(start)
            if let bias {
                parameters.append(Parameter(node: index, role: .bias, layer: nil, name: node.name, grid: nil))
                master.append(bias.data)
            }
        }
        if learnsActivationRanges {
            for (index, node) in student.nodes.enumerated() {
                guard case .fakeQuantize(let quantizer) = node.operation, let grid = quantizer.grid(), grid.scales[0] > 0,
                      let source = node.inputs.first, student.nodes[source].operation != .input else { continue }
                parameters.append(Parameter(node: index, role: .activationStepSize, layer: nil, name: node.name, grid: nil))
                master.append([grid.scales[0]])
            }
        }
        guard !parameters.isEmpty else {
            throw FinetuneError(problem: "model \(student.name) has nothing to train", remedy: "load a model with weight layers")
        }
        self.student = student
        self.teacher = ActivationQuantization.removingQuantizers(teacher)
        self.parameters = parameters
        self.layersFromTeacher = fromTeacher
        self.layersPlacedFromTeacher = placedFromTeacher
        startingMaster = master
    }

    /// Master weights that keep the student's codes and the teacher's order: within each group
    /// (a channel or the tensor), the teacher's weights of code c, which span [lo, hi], are mapped
    /// linearly onto the middle 90% of c's bin, `S * (c - Z + 0.9 * ((w - lo) / (hi - lo) - 0.5))`,
    /// so that a weight near its quantizer's threshold starts near the grid's rounding threshold
    /// and a small step can move it across, as it would from float masters. Nil where the codes
    /// are not a non-decreasing function of the teacher's weights (within a group), e.g. after
    /// a compensation that reorders them; the masters then start from the quantized values.
    static func placeInBins(teacher: [Float], codes: [Int32], grid: WeightGrid) -> [Float]? {
        guard teacher.count == codes.count, grid.groupSize > 0 else { return nil }
        var master = [Float](repeating: 0, count: teacher.count)
        for groupStart in stride(from: 0, to: teacher.count, by: grid.groupSize) {
            let group = groupStart / grid.groupSize
            let indices = groupStart ..< min(groupStart + grid.groupSize, teacher.count)
            var low: [Int32: Float] = [:], high: [Int32: Float] = [:]
            for i in indices {
                low[codes[i]] = min(low[codes[i]] ?? teacher[i], teacher[i])
                high[codes[i]] = max(high[codes[i]] ?? teacher[i], teacher[i])
            }
            // Monotone: the codes' intervals of teacher weights follow each other without overlap.
            let ordered = low.keys.sorted()
            for (a, b) in zip(ordered, ordered.dropFirst()) where high[a]! > low[b]! { return nil }
            let scale = grid.scales[group], zero = grid.zeroPoints[group]
            for i in indices {
                let code = codes[i], lo = low[code]!, hi = high[code]!
                let position: Float = hi > lo ? (teacher[i] - lo) / (hi - lo) - 0.5 : 0
                master[i] = scale * (Float(code) - zero + 0.9 * position)
            }
        }
        return master
    }

    /// The state before any step.
    public func initialCheckpoint() -> FinetuneCheckpoint {
        FinetuneCheckpoint(master: startingMaster, velocity: startingMaster.map { [Float](repeating: 0, count: $0.count) },
                           epochsCompleted: 0, kl: .nan)
    }

    /// The student with `master` in place: quantized weights projected onto their grids, and
    /// biases rounded to int32 as a runtime stores them (`BiasQuantization`), so that training
    /// sees the forward pass that evaluation and export compute; their gradients pass straight
    /// through the rounding, as the weights' do.
    public func model(master: [[Float]]) -> Model {
        var model = student
        for (parameter, values) in zip(parameters, master) {
            let data = parameter.grid?.project(values) ?? values
            if parameter.role == .activationStepSize {
                // A step size kept positive: SGD may push a small one through zero.
                if case .fakeQuantize(let quantizer) = model.nodes[parameter.node].operation,
                   let moved = quantizer.withStepSize(max(data[0], 1e-8)) {
                    model.nodes[parameter.node].operation = .fakeQuantize(moved)
                }
                continue
            }
            if var layer = model.nodes[parameter.node].operation.weightLayer {
                if parameter.role == .weight { layer.weight.data = data } else { layer.bias?.data = data }
                model.nodes[parameter.node].operation.weightLayer = layer
                continue
            }
            switch model.nodes[parameter.node].operation {
            case .batchNorm(var norm):
                if parameter.role == .weight { norm.gamma.data = data } else { norm.beta.data = data }
                model.nodes[parameter.node].operation = .batchNorm(norm)
            default:
                break
            }
        }
        return BiasQuantization.simulated(model)
    }

    /// The teacher's log-probabilities for every image of `data`, row by row.
    public func teacherLogProbabilities(_ data: any LabeledImages, batchSize: Int = 200) throws -> [Double] {
        try logits(of: teacher, on: data, batchSize: batchSize).flatMap { TeacherLoss.logSoftmax($0) }
    }

    func logits(of model: Model, on data: any LabeledImages, batchSize: Int) throws -> [Tensor] {
        let compiled = try CompiledModel(model)
        return try stride(from: 0, to: data.count, by: batchSize).map { start in
            let input = try data.batch(start ..< min(start + batchSize, data.count), normalization: model.normalization)
            return try compiled.logits(input)
        }
    }

    /// KL of `model` against the teacher over `data`, and the percentage of images whose top
    /// class agrees with the teacher's.
    public func divergence(of model: Model, on data: any LabeledImages, teacher teacherLog: [Double]) throws -> (kl: Double, agreement: Double) {
        var total = 0.0, agreeing = 0, offset = 0
        for logits in try self.logits(of: model, on: data, batchSize: 200) {
            let rows = logits.shape[0], classes = logits.shape[1]
            let slice = Array(teacherLog[offset ..< offset + logits.count])
            total += TeacherLoss.klDivergence(teacherLogProbabilities: slice, studentLogits: logits).value * Double(rows)
            for row in 0 ..< rows {
                let student = (0 ..< classes).max { logits.data[row * classes + $0] < logits.data[row * classes + $1] }
                let teacher = (0 ..< classes).max { slice[row * classes + $0] < slice[row * classes + $1] }
                if student == teacher { agreeing += 1 }
            }
            offset += logits.count
        }
        return (total / Double(max(data.count, 1)), 100 * Double(agreeing) / Double(max(data.count, 1)))
    }

    /// Trains for `options.epochs` epochs from `checkpoint` (default: the start). `shouldStop` is
    /// polled before every step; `epochEnded` sees each epoch's report and re-quantized model.
    /// With `validation` images (synthetic too, but not trained on), each epoch also measures the
    /// KL there, and the kept state is the one with the lowest held-out KL: a data-free guard
    /// against fitting the few training images too closely.
    ///
    /// `bestSoFar`, a state kept by an earlier run and measured on the same validation images,
    /// stays the kept state unless this run beats it, so that a run resumed on fresh training
    /// images does not forget a better state of the rounds before.
    public func run(on data: any LabeledImages, validation: (any LabeledImages)? = nil, options: FinetuneOptions, from checkpoint: FinetuneCheckpoint? = nil,
                    bestSoFar: FinetuneCheckpoint? = nil,
                    shouldStop: () -> Bool = { false },
                    stepEnded: (_ step: Int, _ steps: Int, _ epoch: Int) -> Void = { _, _, _ in },
                    epochEnded: (FinetuneEpoch, Model) throws -> Void = { _, _ in }) throws -> FinetuneOutcome {
        try Self.validate(options, data: data)
        let clock = ContinuousClock()
        let start = clock.now
        let teacherLog = try teacherLogProbabilities(data)
        let classes = teacherLog.count / max(data.count, 1)
        var state = checkpoint ?? initialCheckpoint()
        guard state.master.count == parameters.count, zip(state.master, startingMaster).allSatisfy({ $0.count == $1.count }) else {
            throw FinetuneError(problem: "the saved training state does not fit this model", remedy: "fine-tune without resume, or with activation ranges trained as in the run it continues")
        }
        let validationLog = try validation.map { try teacherLogProbabilities($0) }
        func validate(_ model: Model) throws -> (kl: Double, agreement: Double)? {
            guard let validation, let validationLog else { return nil }
            return try divergence(of: model, on: validation, teacher: validationLog)
        }
        // With batch statistics, a state's running statistics are re-estimated on the training
        // images before it is measured or kept: they are a function of the masters and the data.
        let recalibrationImages = options.batchStatistics
            ? try data.batch(Array(0 ..< data.count), normalization: student.normalization) : nil
        func deployed(_ master: [[Float]]) throws -> Model {
            var built = model(master: master)
            if let recalibrationImages {
                _ = try BatchNormRecalibration.run(&built, images: recalibrationImages, batchSize: 256, shouldStop: { false })
            }
            return built
        }
        let startModel = try deployed(state.master)
        let initial = try divergence(of: startModel, on: data, teacher: teacherLog)
        let initialValidation = try validate(startModel)
        state.kl = initial.kl
        state.validationKL = initialValidation?.kl
        var kept = state
        if let bestSoFar, let earlier = bestSoFar.validationKL, let now = state.validationKL, earlier < now,
           bestSoFar.master.count == state.master.count {
            kept = bestSoFar
        }
        var epochs: [FinetuneEpoch] = []
        var interrupted = false
        let lastNode = student.nodes.count - 1
        // LSQ's gradient scale for each trained step size, 1 / sqrt(elements per image x highest
        // level): it keeps the step size's update in proportion to the weights' across layers.
        func stepSizeGradientScale(_ parameter: Parameter, on tape: GradientTape) -> Float {
            guard case .fakeQuantize(let quantizer) = student.nodes[parameter.node].operation, let grid = quantizer.grid() else { return 1 }
            let output = tape.outputs[parameter.node]
            let elements = output.count / max(output.shape.first ?? 1, 1)
            return 1 / (Float(max(elements, 1)) * Float(max(grid.levels.upperBound, 1))).squareRoot()
        }
        let optimizer = NesterovSGD(learningRate: options.learningRate, momentum: options.momentum, weightDecay: options.weightDecay)
        let labels = data.labels(of: 0 ..< data.count)

        training: for _ in 0 ..< options.epochs {
            let epoch = state.epochsCompleted
            let rho = options.rho(atEpoch: epoch)
            let cap = epoch < options.warmUpEpochs ? GradientInundation.warmUpCap : GradientInundation.ceiling
            var generator = SeededGenerator(seed: options.seed &+ UInt64(epoch) &* 0x9E37_79B9_7F4A_7C15)
            let order = Array(0 ..< data.count).shuffled(using: &generator)
            let batches = stride(from: 0, to: order.count, by: options.batchSize).map { Array(order[$0 ..< min($0 + options.batchSize, order.count)]) }
            var layers = parameters.indices.compactMap { index -> LayerUpdates? in
                let parameter = parameters[index]
                guard parameter.grid != nil else { return nil }
                return LayerUpdates(layer: parameter.layer ?? 0, name: parameter.name, weights: startingMaster[index].count,
                                    changed: 0, meanKappa: 0)
            }
            let epochStart = clock.now
            var lossSum = 0.0, klSum = 0.0, steps = 0
            for (stepIndex, batch) in batches.enumerated() {
                if shouldStop() {
                    interrupted = true
                    break training
                }
                var input = try data.batch(batch, normalization: student.normalization)
                let teacherRows: [Double]
                if options.augments {
                    input = Self.augment(input, jitter: options.jitter, flips: options.flips, using: &generator)
                    teacherRows = try TeacherLoss.logSoftmax(ForwardPass.logits(teacher, input: input))
                } else {
                    teacherRows = batch.flatMap { teacherLog[$0 * classes ..< ($0 + 1) * classes] }
                }
                let tape = try GradientTape(model: model(master: state.master), input: input,
                                            batchNormMode: options.batchStatistics ? .batchStatistics : .inference)
                let kl = TeacherLoss.klDivergence(teacherLogProbabilities: teacherRows, studentLogits: tape.output)
                var loss = kl.value
                var seed = kl.gradient
                switch options.loss {
                case .kl:
                    break
                case .klPlusCrossEntropy:
                    let ce = TeacherLoss.crossEntropy(labels: batch.map { labels[$0] }, studentLogits: tape.output)
                    loss += ce.value
                    seed = try Kernels.add(seed, ce.gradient)
                case .gdfq:
                    let ce = TeacherLoss.crossEntropy(labels: batch.map { labels[$0] }, studentLogits: tape.output)
                    let (klWeight, ceWeight) = (Float(options.delta), Float(1 - options.delta))
                    loss = options.delta * kl.value + (1 - options.delta) * ce.value
                    seed = Tensor(shape: seed.shape, data: zip(seed.data, ce.gradient.data).map { klWeight * $0 + ceWeight * $1 })
                }
                guard loss.isFinite else {
                    throw FinetuneError(problem: "the loss became \(loss) at epoch \(epoch + 1), step \(stepIndex + 1)",
                                        remedy: "lower lr (or rho with inundation)")
                }
                let gradients = try tape.backward(seeds: [lastNode: seed], input: false, parameters: true,
                                                  stepSizes: trainsActivationRanges)
                var layerSlot = 0
                for (index, parameter) in parameters.enumerated() {
                    guard let gradient = gradients.parameters[parameter.node] else { continue }
                    var raw = parameter.role == .bias ? (gradient.bias?.data ?? []) : gradient.weight.data
                    if parameter.role == .activationStepSize { raw = raw.map { $0 * stepSizeGradientScale(parameter, on: tape) } }
                    guard raw.count == state.master[index].count else { continue }
                    guard let grid = parameter.grid else {
                        optimizer.step(&state.master[index], velocity: &state.velocity[index], gradient: raw)
                        continue
                    }
                    var passed = grid.straightThrough(master: state.master[index], gradient: raw)
                    var kappa: Float = 1
                    if options.inundation && options.learningRate > 0 {
                        // Counted on the momentum step the optimizer will take, so that rho is the
                        // fraction of integer weights that really changes.
                        let step = optimizer.affineStep(weights: state.master[index], velocity: state.velocity[index], gradient: passed)
                        kappa = GradientInundation.search(master: state.master[index], start: step.start, direction: step.direction,
                                                          grid: grid, rho: rho, cap: cap).kappa
                        if kappa != 1 { for i in passed.indices { passed[i] *= kappa } }
                    }
                    let before = grid.codes(state.master[index])
                    optimizer.step(&state.master[index], velocity: &state.velocity[index], gradient: passed)
                    layers[layerSlot].changed += WeightGrid.changedCodes(before, grid.codes(state.master[index]))
                    layers[layerSlot].meanKappa += Double(kappa)
                    layerSlot += 1
                }
                lossSum += loss
                klSum += kl.value
                steps += 1
                stepEnded(stepIndex + 1, batches.count, epoch + 1)
            }
            let seconds = (clock.now - epochStart).seconds
            for index in layers.indices { layers[index].meanKappa /= Double(max(steps, 1)) }
            state.epochsCompleted += 1
            let trained = try deployed(state.master)
            let measured = try divergence(of: trained, on: data, teacher: teacherLog)
            let heldOut = try validate(trained)
            state.kl = measured.kl
            state.validationKL = heldOut?.kl
            if state.selectionKL < kept.selectionKL { kept = state }
            let report = FinetuneEpoch(epoch: state.epochsCompleted, steps: steps, trainingLoss: lossSum / Double(max(steps, 1)),
                                       trainingKL: klSum / Double(max(steps, 1)), kl: measured.kl, agreement: measured.agreement, validation: heldOut,
                                       rho: options.inundation ? rho : 0, layers: layers, seconds: seconds,
                                       imagesPerSecond: Double(data.count) / max(seconds, 1e-9))
            epochs.append(report)
            try epochEnded(report, trained)
        }
        return FinetuneOutcome(model: try deployed(kept.master), kept: kept, latest: state, initialKL: initial.kl,
                               initialAgreement: initial.agreement, initialValidation: initialValidation, epochs: epochs, interrupted: interrupted,
                               seconds: (clock.now - start).seconds)
    }

    /// Each image of `batch` (N, C, H, W) shifted by its own random (dy, dx) in
    /// [-jitter, jitter], the vacated pixels zero, and mirrored left-right with probability 1/2
    /// when `flips`.
    public static func augment(_ batch: Tensor, jitter: Int, flips: Bool, using generator: inout SeededGenerator) -> Tensor {
        let height = batch.shape[2], width = batch.shape[3], plane = height * width
        let perImage = batch.count / max(batch.shape[0], 1)
        var result = [Float](repeating: 0, count: batch.count)
        for image in 0 ..< batch.shape[0] {
            func offset() -> Int { jitter > 0 ? Int(generator.next() % UInt64(2 * jitter + 1)) - jitter : 0 }
            let dy = offset(), dx = offset()
            let mirrored = flips && generator.next() & 1 == 1
            for base in stride(from: image * perImage, to: (image + 1) * perImage, by: plane) {
                for y in 0 ..< height {
                    let sy = y - dy
                    guard sy >= 0, sy < height else { continue }
                    for x in 0 ..< width {
                        var sx = x - dx
                        guard sx >= 0, sx < width else { continue }
                        if mirrored { sx = width - 1 - sx }
                        result[base + y * width + x] = batch.data[base + sy * width + sx]
                    }
                }
            }
        }
        return Tensor(shape: batch.shape, data: result)
    }

    static func validate(_ options: FinetuneOptions, data: any LabeledImages) throws {
        guard data.count > 0 else {
            throw FinetuneError(problem: "data set \(data.name) is empty", remedy: "train on a data set with images, e.g. distilled ones")
        }
        guard options.epochs >= 0, options.batchSize >= 1 else {
            throw FinetuneError(problem: "epochs=\(options.epochs), batch=\(options.batchSize)", remedy: "use epochs >= 0 and batch >= 1")
        }
        guard options.learningRate >= 0, options.learningRate.isFinite, options.momentum >= 0, options.momentum < 1 else {
            throw FinetuneError(problem: "lr=\(options.learningRate), momentum=\(options.momentum)", remedy: "use lr >= 0 and 0 <= momentum < 1")
        }
        guard options.jitter >= 0, options.jitter < min(data.imageShape.height, data.imageShape.width) else {
            throw FinetuneError(problem: "jitter \(options.jitter) for \(data.imageShape.height)x\(data.imageShape.width) images",
                                remedy: "use a shift between 0 and the image side minus 1, e.g. 4 for CIFAR")
        }
        guard options.delta >= 0, options.delta <= 1 else {
            throw FinetuneError(problem: "delta=\(options.delta)", remedy: "use 0 <= delta <= 1: the weight of KL in (1 - delta) CE + delta KL")
        }
        guard options.rho >= 0, options.rho <= 1, options.rhoDecay > 0, options.rhoDecay <= 1 else {
            throw FinetuneError(problem: "rho=\(options.rho), rho decay \(options.rhoDecay)", remedy: "use 0 <= rho <= 1 and 0 < decay <= 1")
        }
    }
}
