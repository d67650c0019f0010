import CShims
import Foundation
import QuantOps

/// Data-free calibration data: images distilled from the model's own batch-norm statistics,
/// and the commands that keep data sets in files.
enum DistillCommands {
    static var all: [CommandSpec] {
        [distill, saveData, loadData]
    }

    /// The data set `distill` creates.
    static let distilledName = "distilled"

    /// Whose batch-norm statistics `distill` matches.
    enum TeacherSource: String, CaseIterable {
        /// The current model.
        case current
        /// The float model before quantization.
        case float
    }

    static let distill = CommandSpec(
        ["distill"], group: .quantization,
        summary: "Distill calibration images from the float model's BN statistics (data-free)",
        help: """
            Starts from Gaussian noise and optimizes the pixels with Adam so that the input of every batch norm has, over each batch, the mean and standard deviation of that batch norm's running statistics (ZeroQ). The loss is the sum over BN layers of the channel mean of (mu_batch - mu)^2 + (sigma_batch - sigma)^2; ce=W adds W times the cross-entropy of the model's logits toward a target class per image (class-conditional, as GDFQ and Genie), tv= and l2= DeepInversion's total-variation and L2 priors, and jitter=/flip=true shift and mirror each batch at random before every step. The result is the data set 'distilled', usable wherever a data set name goes ('recalibrate bn data=distilled'); pixels are stored as bytes, and labels are the classes the model predicts. Run it on the float model, before 'fold bn', or with from=float once the model is quantized (fresh images for 'finetune ait'). Ctrl-C stops early and keeps the best images so far. The same seed gives the same images on the same machine and thread count.
            """,
        options: [
            OptionParameter("samples", .integer(1...100_000), default: .integer(256), help: "how many images"),
            OptionParameter("steps", .integer(0...100_000), default: .integer(200), help: "Adam steps per batch"),
            OptionParameter("lr", .number(0.000001...100), default: .number(0.2), help: "Adam learning rate on normalized pixels"),
            OptionParameter("batch", .integer(1...100_000), default: .integer(64), help: "images whose statistics are matched together"),
            OptionParameter("seed", .integer(0...Int.max), default: .integer(0), help: "seed of the Gaussian start"),
            OptionParameter("clamp", .boolean, default: .boolean(true), help: "keep pixels in [0, 1] while optimizing"),
            OptionParameter("name", .text, default: .word(distilledName), help: "name of the data set to create"),
            OptionParameter("from", .choice(TeacherSource.self), default: .choice(TeacherSource.current),
                            help: "the model whose statistics to match: the current one, or the float model before quantization"),
            OptionParameter("ce", .number(0...1000), default: .number(0), help: "weight of the cross-entropy toward a target class per image (image i: class i mod classes); 0: statistics only"),
            OptionParameter("tv", .number(0...1000), default: .number(0), help: "weight of the total-variation prior (mean squared difference of neighbouring pixels)"),
            OptionParameter("l2", .number(0...1000), default: .number(0), help: "weight of the L2 prior (mean squared normalized pixel)"),
            OptionParameter("jitter", .integer(0...64), default: .integer(0), help: "random circular shift of up to this many pixels before each step's forward pass"),
            OptionParameter("flip", .boolean, default: .boolean(false), help: "random horizontal flip before each step's forward pass"),
        ],
        examples: ["distill", "distill samples=256 steps=200 lr=0.2 batch=64 seed=0", "distill samples=64 steps=50 name=quick",
                   "distill seed=2 from=float", "distill samples=256 ce=0.1 tv=0.05 jitter=2 flip=true"]
    ) { invocation, session in
        let state = try session.requireModel(for: "distill")
        // Fresh images for fine-tuning come from the float teacher, not from the student being trained.
        let model: Model
        switch try invocation.choice("from", as: TeacherSource.self) {
        case .current: model = state.model
        case .float: model = try session.quantization.floatReference(in: session.models)
        }
        let options = DistillationOptions(samples: try invocation.int("samples"), steps: try invocation.int("steps"),
                                          learningRate: Float(try invocation.double("lr")),
                                          batchSize: try invocation.int("batch"),
                                          seed: UInt64(try invocation.int("seed")),
                                          clampToPixelRange: try invocation.bool("clamp"),
                                          imageShape: model.inputShape,
                                          crossEntropyWeight: Float(try invocation.double("ce")),
                                          totalVariationWeight: Float(try invocation.double("tv")),
                                          l2Weight: Float(try invocation.double("l2")),
                                          jitter: try invocation.int("jitter"), flips: try invocation.bool("flip"))
        let name = try invocation.string("name")
        if Session.standardDataSetNames.contains(name) || ImageFolderName.folder(in: name) != nil {
            throw CommandError("'\(name)' names a real data set", hint: "choose another name with name=NAME")
        }
        let quantized = model.weightLayers.filter { $0.precision != .float32 }.count
        if quantized > 0 {
            // The running statistics describe the float network; matching them through quantized
            // weights yields images for a network that no longer exists.
            session.errors.line("note: \(quantized) layers are quantized; distill from the float model (before quantizing, or with from=float) to match its statistics")
        }
        let reportEvery = max(1, options.steps / 10)
        let showProgress = session.settings.progress
        let result = try Distillation.run(
            model: model, options: options, shouldStop: { qsh_interrupt_requested() != 0 },
            progress: { report in
                guard showProgress, report.step % reportEvery == 0 || report.step == report.steps else { return }
                session.errors.line(String(format: "distill step %d/%d  loss %.4f  best %.4f  %.1f s",
                                           report.step, report.steps, report.loss, report.bestLoss, report.seconds))
            })
        let dataset = try Distillation.dataset(named: name, images: result.images, model: model)
        session.datasets[name] = dataset
        session.values["distill_loss"] = result.finalLoss
        let classes = Set(dataset.labels(of: 0 ..< dataset.count)).count
        let lossName = options.usesPriorsOrLabels ? "loss" : "BN statistics loss"
        var summary = String(format: "distilled %d images of %@ as '%@' in %.1f s: %@ %.4f -> %.4f, %d steps, %d of %d classes predicted",
                             dataset.count, dataset.imageShape.description, name, result.seconds, lossName, result.initialLoss, result.finalLoss,
                             result.stepsCompleted, classes, dataset.classCount)
        if result.interrupted { summary += " (interrupted: kept the best images so far)" }
        session.output.line(summary)
    }

    static let saveData = CommandSpec(
        ["save", "data"], group: .model, summary: "Write a data set in the CIFAR-10 binary layout",
        help: "Each image is 1 label byte and 3072 pixel bytes (R, G, B planes of 32x32), the layout of CIFAR-10's .bin files, so 'load data' and other tools read it back. The file appears only when complete.",
        positionals: [
            Positional("data", .text, help: "a data set name, e.g. distilled"),
            Positional("file", keyword: "to", .path, help: "the .bin file to write"),
        ],
        examples: ["save data distilled to \"distilled-resnet20.bin\""]
    ) { invocation, session in
        let name = try invocation.string("data")
        guard let dataset = try session.dataset(named: name) as? CIFAR10 else {
            throw CommandError("'save data' writes 32x32 images with 10 classes in the CIFAR-10 layout, and '\(name)' is not such a data set",
                               hint: "save images made by 'distill' or read by 'load data'")
        }
        let path = try invocation.string("file")
        try dataset.write(to: URL(fileURLWithPath: path))
        session.output.line("saved \(dataset.count) images of '\(name)' to \(path)")
    }

    static let loadData = CommandSpec(
        ["load", "data"], group: .model, summary: "Read a data set in the CIFAR-10 binary layout",
        help: "Reads a file written by 'save data' (or any CIFAR-10 .bin batch) as a named data set, usable wherever a data set name goes.",
        positionals: [
            Positional("file", .path, help: "the .bin file to read"),
            Positional("name", keyword: "as", .text, default: .word(distilledName), help: "the data set's name"),
        ],
        examples: ["load data \"distilled-resnet20.bin\" as distilled"]
    ) { invocation, session in
        let path = try invocation.string("file")
        let name = try invocation.string("name")
        if Session.standardDataSetNames.contains(name) || ImageFolderName.folder(in: name) != nil {
            throw CommandError("'\(name)' names a real data set", hint: "choose another name with 'as NAME'")
        }
        let dataset: CIFAR10
        do {
            dataset = try CIFAR10(name: name, files: [URL(fileURLWithPath: path)])
        } catch {
            throw CommandError(String(describing: error), hint: "the file must hold 3073-byte CIFAR-10 records, e.g. written by 'save data'")
        }
        session.datasets[name] = dataset
        session.output.line("loaded \(dataset.count) images from \(path) as '\(name)'")
    }
}
