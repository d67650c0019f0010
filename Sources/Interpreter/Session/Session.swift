import Foundation
import QLang
import QuantOps

/// A model as the session holds it: the graph and the steps that made it.
public struct ModelState: Sendable {
    public var model: Model
    /// The zoo name or file it came from.
    public var origin: String
    /// What has been done to it since it was loaded, e.g. `["fold bn", "ternary layer 3.."]`.
    public var steps: [String]
    /// SHA-256 of the checkpoint it was read from, for reports.
    public var checksum: String?

    public init(model: Model, origin: String, steps: [String] = [], checksum: String? = nil) {
        self.model = model
        self.origin = origin
        self.steps = steps
        self.checksum = checksum
    }

    public var summary: String {
        ([origin] + steps).joined(separator: " | ")
    }
}

/// One `eval`, remembered for `results`.
public struct EvaluationRecord: Sendable {
    public var state: String
    public var dataset: String
    public var images: Int
    public var top1: Double
    public var top5: Double
    public var seconds: Double
    /// The recipe's variables when the eval ran, so that plots and reports can show what was swept.
    public var variables: [String: RuntimeValue] = [:]
    /// SHA-256 of the checkpoint the evaluated model came from.
    public var modelChecksum: String?
    /// Exact counts behind top1 and top5, so that parts of a data set merge exactly.
    public var top1Correct: Int?
    public var top5Correct: Int?
    /// The part of the data set evaluated (`eval DATA shard=i/N`), if only a part.
    public var dataShard: Shard?
    /// Where the eval stands in the recipe's sweeps: the sweep item it ran in, if any, and how
    /// many sweep items had started before it. Merging shards orders evals by these.
    public var sweepItem: Int?
    public var sweepItemsBefore = 0

    public init(state: String, dataset: String, images: Int, top1: Double, top5: Double, seconds: Double,
                variables: [String: RuntimeValue] = [:], modelChecksum: String? = nil,
                top1Correct: Int? = nil, top5Correct: Int? = nil, dataShard: Shard? = nil) {
        self.state = state
        self.dataset = dataset
        self.images = images
        self.top1 = top1
        self.top5 = top5
        self.seconds = seconds
        self.variables = variables
        self.modelChecksum = modelChecksum
        self.top1Correct = top1Correct
        self.top5Correct = top5Correct
        self.dataShard = dataShard
    }
}

/// The recipe's sweeps as this process runs them: which shard it is, and what became of each item.
public struct SweepState: Sendable {
    public struct Item: Sendable, Equatable {
        public var index: Int
        /// The loop variable and its value for this item, e.g. `["lam": "0.4"]`.
        public var variables: [String: String]
        /// Nil when the item succeeded; else its error as printed.
        public var error: String?
    }

    /// Set by `--shard i/N`: this process runs the sweep items that `shard.owns(item:)`.
    public var shard: Shard?
    /// Sweep items numbered so far, over every sweep of the recipe, whether run here or not.
    public var itemsStarted = 0
    /// The item running now.
    public var currentItem: Int?
    /// The items this process ran, in order.
    public var items: [Item] = []
    /// Whether an eval split its data by the shard (`shard=auto`).
    public var dataSharded = false

    public func runsHere(item: Int) -> Bool { shard?.owns(item: item) ?? true }

    /// `--shard i/N`.
    public mutating func setShard(_ text: String) throws(ShardError) {
        shard = try Shard(parsing: text)
    }
}

/// Settings a recipe changes with `set`.
public struct Settings: Sendable {
    public var threads: Int = Settings.processorCount
    public var modelsDirectory: String?
    public var dataDirectory: String?
    public var allowDownload = true
    public var progress = true
    /// How `eval` computes: float, or int8 where the model is quantized (`IntegerPlan`).
    public var engine: Arithmetic = .float

    /// The processors this process may use, read once: on Linux `activeProcessorCount` reads
    /// the cgroup's CPU limit from files each time it is asked.
    static let processorCount = ProcessInfo.processInfo.activeProcessorCount
}

/// Everything a running recipe or REPL knows: the model, variables, results and settings.
public final class Session {
    public let registry: CommandRegistry
    public let output: OutputSink
    public let errors: OutputSink

    public var settings = Settings()
    public var variables: [String: RuntimeValue] = [:]
    /// Variables fixed from the command line (`--set`): a recipe's `let` does not override them.
    public var pinnedVariables: Set<String> = []
    /// Named results such as `top1`, for `expect` and `print`.
    public var values: [String: Double] = [:]

    /// The model and its history; changed only through `ModelHistory`'s methods.
    public private(set) var models = ModelHistory()
    /// The model commands work on.
    public var current: ModelState? { models.current }
    /// The model as the last `load` read it.
    public var loaded: ModelState? { models.loaded }
    public var evaluations: [EvaluationRecord] = [] {
        didSet {
            // New records are stamped here so that every command that evaluates records the same context.
            guard evaluations.count > oldValue.count else { return }
            for index in oldValue.count..<evaluations.count {
                if evaluations[index].variables.isEmpty { evaluations[index].variables = variables }
                evaluations[index].modelChecksum = evaluations[index].modelChecksum ?? current?.checksum
                evaluations[index].sweepItem = sweep.currentItem
                evaluations[index].sweepItemsBefore = sweep.currentItem ?? sweep.itemsStarted
            }
        }
    }
    /// Seeds of the random draws made so far, by what drew them (e.g. `"calibrate"`), for reports.
    public var seeds: [String: UInt64] = [:]
    /// Data sets read so far, and data sets made in the session, by name.
    public var datasets: [String: any LabeledImages] = [:]
    /// How each image folder is read (by the folder as the recipe wrote it): set by
    /// `eval imagefolder "DIR" resize=... crop=...`, used by every `data="imagefolder:DIR"`.
    public var imageFolderOptions: [String: ImageFolderOptions] = [:]
    /// What the quantization commands share within a load: float reference, priors, layers kept
    /// float, calibration and its caches. Started afresh by `install`.
    public var quantization = QuantizationContext(calibrationStore: QuantizationContext.storeFromEnvironment())
    /// The last `finetune ait`: its state to resume from and its per-epoch reports.
    public var finetuning: FinetuneRecord?
    /// The statements that ran successfully, for `history save`.
    public var history: [String] = []
    /// Sweep items and sharding.
    public var sweep = SweepState()
    /// The recipe file or text the session was started with, for reports and merging shards.
    public var mainRecipe: String?
    /// Files being sourced, to refuse a file that sources itself.
    var sourceStack: [String] = []
    /// Source texts by file name, so that an error in any of them shows its line.
    public var sources: [String: SourceFile] = [:]

    /// When the session began, for the timings of reports.
    public let startedAt = Date()

    public init(registry: CommandRegistry = .standard, output: OutputSink = StandardStream.output(),
                errors: OutputSink = StandardStream.error()) {
        self.registry = registry
        self.output = output
        self.errors = errors
    }

    /// The model, or an error that says how to get one.
    public func requireModel(for command: String) throws -> ModelState {
        guard let current else {
            throw CommandError("'\(command)' needs a model", hint: "load one first, e.g. 'load resnet20'")
        }
        return current
    }

    /// Replaces the model after a command changed it, remembering the previous state for `undo`.
    public func commit(_ model: Model, step: String) {
        models.commit(model, step: step)
    }

    /// A freshly loaded model: the current and loaded state, with an empty undo history.
    public func install(_ state: ModelState) {
        models.install(state)
        quantization.begin(load: models.loadNumber)
    }

    /// Makes `state` current (`reset`, `restore`); `undo` returns to the state before.
    public func move(to state: ModelState) {
        models.move(to: state)
    }

    /// Steps back over the last `steps` model changes.
    public func undo(_ steps: Int) throws {
        try models.undo(steps)
    }

    /// Remembers the current model under a name, for `restore`.
    public func takeSnapshot(named name: String) throws -> ModelState {
        try models.takeSnapshot(named: name)
    }

    /// What a sweep item may change and must not pass on to the next item: the model and its
    /// history, variables, named results, data sets made, settings and quantization state.
    /// Evaluations, seeds, calibration caches and the statement history accumulate across items.
    struct ItemState {
        var settings: Settings
        var variables: [String: RuntimeValue]
        var values: [String: Double]
        var models: ModelHistory
        var datasets: [String: any LabeledImages]
        var imageFolderOptions: [String: ImageFolderOptions]
        var quantization: QuantizationContext
        var finetuning: FinetuneRecord?
    }

    func captureItemState() -> ItemState {
        ItemState(settings: settings, variables: variables, values: values, models: models,
                  datasets: datasets, imageFolderOptions: imageFolderOptions, quantization: quantization, finetuning: finetuning)
    }

    func restore(_ state: ItemState) {
        settings = state.settings
        variables = state.variables
        values = state.values
        models = state.models
        datasets = state.datasets
        imageFolderOptions = state.imageFolderOptions
        quantization.adoptLoadState(of: state.quantization)
        finetuning = state.finetuning
        applySettings()
    }

    /// The prompt shows the model and whether it differs from what was loaded.
    public var promptLabel: String {
        guard let current else { return "qsh" }
        return "qsh " + current.origin + (current.steps.isEmpty ? "" : "*")
    }
}

/// An error a command reports: what went wrong and how to fix it.
public struct CommandError: Error, CustomStringConvertible {
    public var message: String
    public var hint: String?

    public init(_ message: String, hint: String? = nil) {
        self.message = message
        self.hint = hint
    }

    public var description: String { message }
}

/// Raised when Ctrl-C stops a running command.
public struct Interrupted: Error, CustomStringConvertible {
    public init() {}
    public var description: String { "interrupted" }
}
