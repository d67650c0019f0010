import Foundation
import QuantOps

/// What the quantization commands share about the model loaded last: the float model they
/// compare with, the batch-norm priors bias correction reads, the layers kept float, the last
/// calibration and analyses, and the calibration caches.
///
/// It belongs to one load, named by `ModelHistory.loadNumber`: the session starts it afresh when
/// the history records a new load, so that no command has to check whether the model it sees
/// still comes from the same checkpoint. `undo`, `reset` and `restore` stay within the load and
/// keep it: the float reference follows them because it is taken again while the weights are
/// float (`captureFloatReference`), and the priors are matched to the float model they describe.
public struct QuantizationContext: Sendable {
    /// The `ModelHistory.loadNumber` of the load this state belongs to.
    public private(set) var load: Int
    /// The model just before its first weight quantization in this load, quantizers removed.
    public private(set) var floatReference: Model?
    /// Per-channel pre-activation distributions rescaled by `equalize`, with the fingerprint of the
    /// equalized float model they describe; other models read the loaded model's batch norms.
    private var equalizedPriors: (priors: ChannelPriors, model: UInt64)?
    /// Node names of layers that `keep layer ... float` protects from later quantization.
    public var keptFloat: Set<String> = []
    /// The last calibration, re-applied when quantizers are placed again on the same model.
    public var lastCalibration: CalibrationRequest?
    /// The last layer-wise error analysis and sensitivity run, for reports and figures.
    public var lastAnalysis: LayerErrorAnalysis?
    public var lastSensitivity: SensitivityReport?

    /// Activation statistics by model state and calibration data, so that switching range
    /// estimators does not run the model again. Keyed by the model's content, so it stays valid
    /// across loads and sweep items.
    public var calibrationCache = CalibrationCache()
    /// Activation statistics shared between processes through files, when `QSH_CALIBRATION_CACHE`
    /// names a directory: the shards of a sweep then calibrate once. Off by default, so that a
    /// run never depends on files an earlier run left.
    public var calibrationStore: CalibrationStore?

    public init(load: Int = 0, calibrationStore: CalibrationStore? = nil) {
        self.load = load
        self.calibrationStore = calibrationStore
    }

    /// The store `QSH_CALIBRATION_CACHE` names, if any. Read with `getenv`, which looks up the one
    /// variable: `ProcessInfo.environment` would copy them all for every session.
    public static func storeFromEnvironment() -> CalibrationStore? {
        guard let directory = getenv("QSH_CALIBRATION_CACHE").map({ String(cString: $0) }), !directory.isEmpty else { return nil }
        return CalibrationStore(directory: URL(fileURLWithPath: directory, isDirectory: true))
    }

    /// Forgets what belonged to the previous load; the caches stay.
    mutating func begin(load: Int) {
        adoptLoadState(of: QuantizationContext(load: load))
    }

    /// Takes `other`'s per-load state (a sweep item going back to the state it started from),
    /// keeping this context's caches, which only ever gain entries.
    mutating func adoptLoadState(of other: QuantizationContext) {
        let (cache, store) = (calibrationCache, calibrationStore)
        self = other
        (calibrationCache, calibrationStore) = (cache, store)
    }

    /// Layer numbers (from 1) of the layers in `model` that `keep ... float` protects.
    func keptFloatLayers(in model: Model) -> Set<Int> {
        Set(model.weightLayerNodes.enumerated().filter { keptFloat.contains(model.nodes[$1].name) }.map { $0.offset + 1 })
    }

    // MARK: - Float reference

    /// Remembers `model` as the float reference when it is about to be quantized. While its
    /// weights are float the model itself is the reference (also after `reset` or `undo` led to
    /// another float model); once they are quantized, the last one stays.
    public mutating func captureFloatReference(_ model: Model) {
        let base = ActivationQuantization.removingQuantizers(model)
        guard !base.hasQuantizedWeights else { return }
        floatReference = base
    }

    /// The float model that the current one is compared with, distilled from and fine-tuned
    /// against: the current model itself while its weights are float, else the remembered
    /// reference, else the loaded model (with BN folded when the current model has none).
    public func floatReference(in history: ModelHistory) throws -> Model {
        if let current = history.current?.model {
            let base = ActivationQuantization.removingQuantizers(current)
            // Float weights: the model is its own reference (only activations are quantized).
            if !base.hasQuantizedWeights { return base }
            if let floatReference, floatReference.nodes.map(\.name) == base.nodes.map(\.name) {
                return floatReference
            }
        }
        guard var loaded = history.loaded?.model else {
            throw CommandError("there is no float model to compare with", hint: "load one first, e.g. 'load resnet20'")
        }
        let currentHasBatchNorm = history.current?.model.nodes.contains {
            if case .batchNorm = $0.operation { return true } else { return false }
        } ?? true
        if !currentHasBatchNorm { try ModelTransforms.foldBatchNorm(&loaded) }
        return loaded
    }

    // MARK: - Priors

    /// The pre-activation priors of `floatModel`: those `equalize` left if it produced this very
    /// model, otherwise the batch-norm statistics of the loaded model as they are.
    func channelPriors(describing floatModel: Model, in history: ModelHistory) throws -> ChannelPriors {
        if let equalizedPriors, equalizedPriors.model == Self.fingerprint(floatModel) {
            return equalizedPriors.priors
        }
        guard let loaded = history.loaded?.model else {
            throw CommandError("there is no loaded model to read batch-norm statistics from", hint: "load one first, e.g. 'load resnet20'")
        }
        return BiasCorrection.priors(fromBatchNormsOf: loaded)
    }

    /// `equalize` produced `model`, whose priors are `priors`. The float model changed, so the
    /// next quantization takes a new reference.
    mutating func recordEqualized(_ model: Model, priors: ChannelPriors) {
        equalizedPriors = (priors, Self.fingerprint(model))
        floatReference = nil
    }

    private static func fingerprint(_ model: Model) -> UInt64 {
        ActivationCalibration.fingerprint(ActivationQuantization.removingQuantizers(model))
    }

    // MARK: - Calibration

    /// The last calibration and its cached statistics for `model`, when they are cached, so that
    /// ranges follow a change of weights or quantizers without running the model again.
    func cachedLastCalibration(for model: Model) -> (request: CalibrationRequest, statistics: CalibrationStatistics)? {
        guard let lastCalibration,
              let statistics = calibrationCache.statistics(for: CalibrationKey(model: model, data: lastCalibration.cacheLabel))
        else { return nil }
        return (lastCalibration, statistics)
    }
}
