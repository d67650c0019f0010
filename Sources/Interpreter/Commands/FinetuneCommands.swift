import CShims
import Foundation
import QuantOps

/// What `finetune ait` leaves behind: the state to resume from and the per-epoch reports that
/// `plot updates` draws.
public struct FinetuneRecord: Sendable {
    /// The masters and momentum where the last run stopped.
    public var checkpoint: FinetuneCheckpoint
    /// The model `finetune` committed; resuming needs the session to still hold it.
    public var model: Model
    /// The state behind the committed model, and the held-out data it was chosen on.
    public var kept: FinetuneCheckpoint
    public var validationData: String?
    /// Every epoch reported so far, across resumes.
    public var epochs: [FinetuneEpoch]
    /// The options of the last run, for reports and the figure's target line.
    public var options: FinetuneOptions
}

/// Zero-shot quantization-aware fine-tuning (AIT, methods.md §5).
enum FinetuneCommands {
    /// Which statistics the batch norms use while fine-tuning.
    enum BatchNormStatistics: String, CaseIterable {
        /// Their running statistics, fixed.
        case running
        /// The batch's; the running ones are re-estimated on the training images at every measured state.
        case batch
    }

    /// Whether the activation ranges train with the weights.
    enum ActivationRanges: String, CaseIterable {
        /// As 'calibrate' left them.
        case fixed
        /// Each range between layers trains its step size (LSQ), the zero point kept.
        case learned
    }

    static var all: [CommandSpec] {
        [finetune, plotUpdates]
    }

    static let finetune = CommandSpec(
        ["finetune", "ait"], group: .quantization,
        summary: "Fine-tune the quantized model against its float teacher on synthetic data (AIT)",
        help: """
            Quantization-aware training without real data: the student (the current model, its weights and activations fake-quantized as 'quantize' and 'calibrate' left them) learns to match the float teacher (the model before quantization) on a data set such as the one 'distill' makes. Float master weights are kept and updated by SGD with Nesterov momentum; gradients pass the quantizers by the straight-through estimator; at the end every quantized layer is re-quantized on its grid. The loss is KL(teacher || student) (loss=kl, AIT) or KL + CE, each with weight 1, the cross-entropy taken on the data set's labels, which for images 'distill' made from the float model are the teacher's predicted classes (loss=kl+ce; GDFQ-like: GDFQ takes its generator's labels and minimizes (1 - delta) CE + delta KL). Gradient inundation scales each quantized layer's gradient by the kappa that makes a fraction rho of its integer weights change at the step (kappa capped at 128 during the warm-up epochs; rho multiplied by rho_decay every rho_every epochs). Each epoch reports the KL and top-class agreement with the teacher over the data, how many integer weights changed, and optionally top-1 on a strided subset of eval=DATA. The kept model is the state with the lowest KL among the start and the epochs' ends, measured on validate=DATA (held-out synthetic images, e.g. a second 'distill' with another seed and name) when given, else on the training data. Ctrl-C stops between steps and keeps that state. 'finetune ait resume=true' continues the run where it stopped, with its momentum and schedule, e.g. on freshly distilled images.
            """,
        options: [
            OptionParameter("data", .text, default: .word(DistillCommands.distilledName), help: "training images (synthetic, e.g. from 'distill')"),
            OptionParameter("samples", .integer(1...10_000_000), help: "train on this many images of the data, drawn by a shuffle seeded with seed= (default: all)"),
            OptionParameter("epochs", .integer(0...1_000_000), default: .integer(1), help: "passes over the data"),
            OptionParameter("lr", .number(0...10), default: .number(1e-4), help: "learning rate"),
            OptionParameter("momentum", .number(0...0.999), default: .number(0.9), help: "Nesterov momentum"),
            OptionParameter("weight_decay", .number(0...1), default: .number(0), help: "L2 penalty on the master weights"),
            OptionParameter("batch", .integer(1...100_000), default: .integer(64), help: "images per step"),
            OptionParameter("seed", .integer(0...Int.max), default: .integer(0), help: "seed of the batch order and of the samples= draw"),
            OptionParameter("loss", .choice(FinetuneLoss.self), default: .choice(FinetuneLoss.kl), help: "kl (AIT), kl+ce: KL + cross-entropy on the data's labels, or gdfq: (1 - delta) CE + delta KL"),
            OptionParameter("delta", .number(0...1), default: .number(0.5), help: "with loss=gdfq: the weight of KL"),
            OptionParameter("jitter", .integer(0...64), default: .integer(0), help: "augment each batch: shift every image by up to this many pixels (vacated pixels zero); the teacher sees the same views"),
            OptionParameter("flip", .boolean, default: .boolean(false), help: "augment each batch: mirror images left-right at random"),
            OptionParameter("bn", .choice(BatchNormStatistics.self), default: .choice(BatchNormStatistics.running), help: "running: batch norms keep their running statistics; batch: train on batch statistics and re-estimate the running ones on the training images at every measured state"),
            OptionParameter("ranges", .choice(ActivationRanges.self), default: .choice(ActivationRanges.fixed), help: "fixed: activation ranges stay as calibrated; learned: each activation range between layers trains its step size with the weights (LSQ's gradient), its zero point kept"),
            OptionParameter("inundation", .boolean, default: .boolean(true), help: "gradient inundation on or off"),
            OptionParameter("rho", .number(0...1), default: .number(1e-3), help: "fraction of each layer's integer weights to change per step"),
            OptionParameter("warmup", .integer(0...1_000_000), default: .integer(1), help: "epochs during which kappa is capped at 128"),
            OptionParameter("rho_decay", .number(0.000001...1), default: .number(0.1), help: "factor applied to rho every rho_every epochs"),
            OptionParameter("rho_every", .integer(1...1_000_000), default: .integer(100), help: "epochs between rho decays"),
            OptionParameter("validate", .text, help: "held-out synthetic images: per-epoch KL there, and the kept state is the one with the lowest"),
            OptionParameter("eval", .text, help: "labelled data for a per-epoch top-1, e.g. cifar10 or \"imagefolder:DIR\""),
            OptionParameter("stride", .integer(1...10_000), default: .integer(20), help: "with eval: every K-th image"),
            OptionParameter("resume", .boolean, default: .boolean(false), help: "continue the last fine-tuning (masters, momentum, epoch count)"),
        ],
        examples: [
            "finetune ait data=distilled epochs=4 lr=1e-4 rho=1e-3 momentum=0.9 batch=64 seed=0",
            "finetune ait epochs=4 loss=kl+ce inundation=false",
            "finetune ait epochs=2 eval=cifar10 stride=50",
            "finetune ait epochs=8 lr=1e-3 inundation=false ranges=learned",
            "finetune ait resume=true epochs=1",
        ]
    ) { invocation, session in
        let state = try session.requireModel(for: "finetune ait")
        guard state.model.hasQuantizedWeights else {
            throw CommandError("'finetune ait' trains a quantized model against the float one, and no layer is quantized",
                               hint: "quantize first, e.g. 'ternary layer 3..' or 'quantize weights bits=4'")
        }
        let options = FinetuneOptions(
            epochs: try invocation.int("epochs"), learningRate: Float(try invocation.double("lr")),
            momentum: Float(try invocation.double("momentum")), weightDecay: Float(try invocation.double("weight_decay")),
            batchSize: try invocation.int("batch"), seed: UInt64(try invocation.int("seed")),
            loss: try invocation.choice("loss", as: FinetuneLoss.self), inundation: try invocation.bool("inundation"),
            rho: try invocation.double("rho"), warmUpEpochs: try invocation.int("warmup"),
            rhoDecay: try invocation.double("rho_decay"), rhoDecayEvery: try invocation.int("rho_every"),
            delta: try invocation.double("delta"), jitter: try invocation.int("jitter"), flips: try invocation.bool("flip"),
            batchStatistics: try invocation.choice("bn", as: BatchNormStatistics.self) == .batch)
        var previous: FinetuneRecord? = nil
        if try invocation.bool("resume") {
            guard let record = session.finetuning else {
                throw CommandError("there is no fine-tuning to resume", hint: "run 'finetune ait' without resume=true first")
            }
            guard record.model == state.model else {
                throw CommandError("the model changed since the last 'finetune ait'", hint: "run 'finetune ait' without resume=true to start afresh")
            }
            previous = record
        }
        let dataName = try invocation.string("data")
        if dataName == DistillCommands.distilledName && session.datasets[dataName] == nil {
            throw CommandError("there are no distilled images to fine-tune on",
                               hint: "run 'distill' on the float model first, or name a data set with data=NAME")
        }
        var data = try session.dataset(named: dataName)
        if let samples = invocation.optionalInt("samples") {
            guard samples <= data.count else {
                throw CommandError("samples=\(samples) but '\(dataName)' has \(data.count) images", hint: "use samples=\(data.count) or fewer")
            }
            // Drawn with the run's seed, so that rounds resumed with new seeds see new images.
            data = SampledImages(data, indices: try data.sampleIndices(samples, seed: options.seed))
        }
        let validationName = invocation.optionalString("validate")
        let validationData = try validationName.map { try session.dataset(named: $0) }
        let evaluationData = try invocation.optionalString("eval").map { try session.dataset(named: $0) }
        let stride = try invocation.int("stride")
        let teacher = try session.quantization.floatReference(in: session.models)
        let trainer = try QuantizationAwareTraining(student: state.model, teacher: teacher,
                                                    learnsActivationRanges: try invocation.choice("ranges", as: ActivationRanges.self) == .learned)
        let quantizedLayers = trainer.parameters.filter { $0.grid != nil }.count
        if quantizedLayers == 0 {
            session.errors.line("note: no layer is quantized; the student trains as a float model")
        }
        session.seeds["finetune"] = options.seed
        let showProgress = session.settings.progress
        var progress: ProgressBar? = nil
        let outcome = try trainer.run(
            on: data, validation: validationData, options: options, from: previous?.checkpoint,
            bestSoFar: previous.flatMap { $0.validationData != nil && $0.validationData == validationName ? $0.kept : nil },
            shouldStop: { qsh_interrupt_requested() != 0 },
            stepEnded: { step, steps, epoch in
                if step == 1 { progress = ProgressBar("finetune epoch \(epoch)", sink: session.errors, enabled: showProgress) }
                progress?.update(done: step, total: steps)
            },
            epochEnded: { report, model in
                progress?.finish()
                progress = nil
                var line = describe(report, of: previous?.checkpoint.epochsCompleted ?? 0, plus: options.epochs)
                if let evaluationData {
                    let result = try Evaluation.run(model: model, dataset: evaluationData, stride: stride, batchSize: 250,
                                                    shouldStop: { qsh_interrupt_requested() != 0 })
                    if !result.stoppedEarly {
                        line += String(format: "  top-1 %.2f%%", result.top1)
                        session.values["finetune_top1"] = result.top1
                    }
                }
                session.output.line(line)
            })
        progress?.finish()

        let epochs = (previous?.epochs ?? []) + outcome.epochs
        let keptEpoch = outcome.kept.epochsCompleted
        let step = invocation.text
        session.commit(outcome.model, step: step)
        let committed = session.current?.model ?? outcome.model
        // Resuming continues the run where it stopped (momentum and all), not from the kept state.
        session.finetuning = FinetuneRecord(checkpoint: outcome.latest, model: committed, kept: outcome.kept,
                                            validationData: validationName, epochs: epochs, options: options)
        session.values["finetune_kl"] = outcome.kept.kl
        if let heldOut = outcome.kept.validationKL { session.values["finetune_validation_kl"] = heldOut }
        let last = outcome.epochs.last
        var summary = String(format: "finetuned %d epoch%@ on %d images of '%@' in %.1f s: KL %.4f -> %.4f, agreement with the teacher %.1f%% -> %.1f%%",
                             outcome.epochs.count, outcome.epochs.count == 1 ? "" : "s", data.count, dataName, outcome.seconds,
                             outcome.initialKL, outcome.kept.kl, outcome.initialAgreement, last?.agreement ?? outcome.initialAgreement)
        if !outcome.epochs.isEmpty {
            summary += keptEpoch == (previous?.checkpoint.epochsCompleted ?? 0)
                ? "; no epoch lowered the KL, kept the starting state" : "; kept epoch \(keptEpoch)"
            if keptEpoch < (previous?.checkpoint.epochsCompleted ?? 0) { summary += " (of an earlier run)" }
        }
        if let start = outcome.initialValidation?.kl, let kept = outcome.kept.validationKL {
            summary += String(format: "; held-out KL %.4f -> %.4f", start, kept)
        }
        summary += "; \(quantizedLayers) quantized layer\(quantizedLayers == 1 ? "" : "s") re-quantized on their grids"
            + (previous == nil ? " (\(trainer.layersFromTeacher) with float masters from the teacher"
                + (trainer.layersPlacedFromTeacher > 0 ? ", \(trainer.layersPlacedFromTeacher) placed in their bins by the teacher's weights)" : ")")
                : " (masters carried over)")
        let learnedRanges = trainer.parameters.filter { $0.role == .activationStepSize }.count
        if learnedRanges > 0 { summary += "; \(learnedRanges) activation range\(learnedRanges == 1 ? "" : "s") learned" }
        if outcome.interrupted { summary += " (interrupted)" }
        session.output.line(summary)
    }

    /// One epoch's line of the report.
    static func describe(_ report: FinetuneEpoch, of before: Int, plus asked: Int) -> String {
        let weights = report.layers.reduce(0) { $0 + $1.weights }
        let kappas = report.layers.map(\.meanKappa)
        let meanKappa = kappas.isEmpty ? 1 : kappas.reduce(0, +) / Double(kappas.count)
        var line = String(format: "epoch %d/%d  loss %.4f  KL %.4f  agree %.1f%%  changed/step %.1f (%.3f%%)",
                          report.epoch, before + asked, report.trainingLoss, report.kl, report.agreement,
                          report.changedPerStep, weights > 0 ? 100 * report.changedPerStep / Double(weights) : 0)
        if let heldOut = report.validation {
            line += String(format: "  held-out KL %.4f agree %.1f%%", heldOut.kl, heldOut.agreement)
        }
        if report.rho > 0 { line += String(format: "  rho %.0e  kappa %.1f", report.rho, meanKappa) }
        line += String(format: "  %.1f s, %.0f img/s", report.seconds, report.imagesPerSecond)
        return line
    }

    static let plotUpdates = CommandSpec(
        ["plot", "updates"], group: .analysis,
        summary: "SVG of how many integer weights each layer changed per step, by epoch, from 'finetune'",
        help: "One line per epoch (at most six, spread from first to last) over the quantized layers: the percentage of the layer's integer weights whose value changed per step, averaged over the epoch (the AIT paper's Figs. 3 and 4). With inundation the target rho is drawn dashed.",
        positionals: [Positional("file", keyword: "to", .path, help: "the .svg file to write")],
        examples: ["plot updates to \"updates.svg\""]
    ) { invocation, session in
        guard let record = session.finetuning, !record.epochs.isEmpty else {
            throw CommandError("no fine-tuning to plot", hint: "run 'finetune ait' first")
        }
        let path = try invocation.string("file")
        let figure = updatesFigure(record)
        try figure.render().write(to: path)
        session.output.line("wrote \(path): integer weight updates of \(figure.categories?.count ?? 0) layers over \(figure.series.count) epochs")
    }

    static func updatesFigure(_ record: FinetuneRecord) -> ResultsFigure {
        let epochs = record.epochs
        let wanted = min(6, epochs.count)
        let chosen = wanted <= 1 ? [epochs.count - 1]
            : (0 ..< wanted).map { Int((Double($0) * Double(epochs.count - 1) / Double(wanted - 1)).rounded()) }
        let series = Array(Set(chosen)).sorted().map { index -> ResultsFigure.Series in
            let report = epochs[index]
            return ResultsFigure.Series(name: "epoch \(report.epoch)", points: report.layers.enumerated().map { position, layer in
                (Double(position), 100 * layer.changedFraction(steps: report.steps))
            })
        }
        let layers = epochs.last?.layers.map { "\($0.layer)" } ?? []
        let references = record.options.inundation
            ? [ResultsFigure.Reference(label: "rho (target)", value: 100 * (epochs.last?.rho ?? record.options.rho))] : []
        return ResultsFigure(title: "Integer weights changed per step", xLabel: "layer",
                             yLabel: "changed per step (% of the layer)", series: series, references: references,
                             categories: layers)
    }
}
