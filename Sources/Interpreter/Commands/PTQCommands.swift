import CShims
import Foundation
import QuantOps

/// What post-training quantization remembers between commands.
public struct PTQState: Sendable {
    /// The model just before its first weight or activation quantization since it was loaded:
    /// the float model that analysis, sensitivity, bias correction and `keep ... float` compare with.
    public var floatReference: Model?
    /// Fingerprint of the loaded model this state belongs to, so that a new `load` starts afresh.
    public var load: UInt64?
    /// Node names of layers that `keep layer ... float` protects from later quantization.
    public var keptFloat: Set<String> = []
    /// The last calibration, re-applied when quantizers are placed again on the same model.
    public var lastCalibration: CalibrationRequest?

    public init() {}
}

/// The data and method of a `calibrate`.
public struct CalibrationRequest: Sendable {
    public var data: String
    public var samples: Int
    public var batchSize: Int
    public var estimator: RangeEstimator
}

/// Post-training quantization for 8-bit deployment (methods.md §4).
enum PTQCommands {
    static var all: [CommandSpec] {
        [quantizeWeights, quantizeActivations, keepFloat, calibrate]
    }

    // MARK: - Quantization

    static let quantizeWeights = CommandSpec(
        ["quantize", "weights"], group: .quantization, summary: "Quantize weights for integer deployment (per channel by default)",
        help: "Uniform affine weights: symmetric S = max|W| / (2^(b-1) - 1) or asymmetric over [min(W,0), max(W,0)], one scale per output channel or per tensor. Without 'layer', every layer except those 'keep layer ... float' protects. Fold BN first: the folded weights are what a runtime stores.",
        positionals: [Positional("layers", keyword: "layer", .layers, optional: true, help: "which layers (default all)")],
        options: [
            OptionParameter("bits", .integer(2...16), default: .integer(8), help: "bit width"),
            OptionParameter("scheme", .choice(["symmetric", "asymmetric"]), default: .word("symmetric"), help: "grid"),
            OptionParameter("granularity", .choice(Granularity.allCases.map(\.rawValue)), default: .word("channel"), help: "one scale per output channel or per tensor"),
        ],
        examples: ["quantize weights bits=8 scheme=symmetric granularity=channel", "quantize weights layer 2.. bits=4"],
        changesModel: true
    ) { invocation, session in
        var model = try session.requireModel(for: "quantize weights").model
        syncWithLoad(session)
        let bits = invocation.int("bits") ?? 8
        let scheme = QuantizationScheme(rawValue: invocation.string("scheme") ?? "symmetric") ?? .symmetric
        let granularity = Granularity(rawValue: invocation.string("granularity") ?? "channel") ?? .channel
        let requested = invocation.isSet("layers") ? try invocation.layers(in: model) : Array(1...max(1, model.weightLayerNodes.count))
        let layerNodes = model.weightLayerNodes
        let kept = requested.filter { $0 <= layerNodes.count && session.ptq.keptFloat.contains(model.nodes[layerNodes[$0 - 1]].name) }
        let layers = requested.filter { !kept.contains($0) }
        captureFloatReference(model, session: session)
        let results = try ModelTransforms.quantize(&model, layers: layers, with: .uniform(bits: bits, scheme: scheme, granularity: granularity))
        session.commit(model, step: invocation.text)
        let meanError = results.isEmpty ? 0 : results.map(\.relativeError).reduce(0, +) / Double(results.count)
        var line = "weights \(bits)-bit \(scheme.rawValue) per \(granularity.rawValue): \(results.count) layers (\(describeLayers(layers))), mean relative error \(String(format: "%.4f", meanError))"
        if !kept.isEmpty { line += "; kept float: \(describeLayers(kept))" }
        session.output.line(line)
    }

    static let quantizeActivations = CommandSpec(
        ["quantize", "activations"], group: .quantization, summary: "Put fake quantizers on the activations a deployment runtime stores",
        help: """
            Quantizes the tensors an integer runtime materializes after fusing conv + BN (+ residual add) + ReLU: the network input, each fused chain's output and each pooling output. The option-A shortcut and flatten only move values that are already on the grid; the logits stay float (the runtime dequantizes the last accumulator). With 'layer SEL', only those layers' outputs (layer 1 also takes the network input), e.g. 'bits=16' for a sensitive layer. Ranges come from 'calibrate'; the last calibration is re-applied from its cached statistics when it fits the model.
            """,
        positionals: [Positional("layers", keyword: "layer", .layers, optional: true, help: "outputs of which layers (default every activation)")],
        options: [
            OptionParameter("bits", .integer(ActivationQuantizer.validBits), default: .integer(8), help: "bit width"),
            OptionParameter("scheme", .choice(ActivationQuantizer.schemes.map(\.rawValue)), default: .word("asymmetric"), help: "asymmetric (zero point) or symmetric"),
            OptionParameter("granularity", .choice([Granularity.tensor.rawValue]), default: .word("tensor"), help: "one range per tensor, as runtimes use for activations"),
        ],
        examples: ["quantize activations bits=8 scheme=asymmetric granularity=tensor", "quantize activations layer 19 bits=16"],
        changesModel: true
    ) { invocation, session in
        var model = try session.requireModel(for: "quantize activations").model
        syncWithLoad(session)
        let quantizer = ActivationQuantizer(bits: invocation.int("bits") ?? 8,
                                            scheme: QuantizationScheme(rawValue: invocation.string("scheme") ?? "asymmetric") ?? .asymmetric)
        let layerNodes = model.weightLayerNodes
        var layers: [Int]? = invocation.isSet("layers") ? try invocation.layers(in: model) : nil
        let keptLayers = (1...max(1, layerNodes.count)).filter {
            $0 <= layerNodes.count && session.ptq.keptFloat.contains(model.nodes[layerNodes[$0 - 1]].name)
        }
        captureFloatReference(model, session: session)
        let placed = try ActivationQuantization.quantize(&model, with: quantizer, layers: layers)
        if !keptLayers.isEmpty {
            ActivationQuantization.keepFloat(&model, layers: keptLayers)
            layers = nil
        }
        let total = ActivationQuantization.quantizers(in: model).count
        var line = "activations \(quantizer.label) per tensor: \(placed.count) tensors"
            + (layers == nil ? "" : " (\(describeLayers(layers ?? [])))") + ", \(total) quantized in the model, logits float"
        if !keptLayers.isEmpty { line += "; kept float: \(describeLayers(keptLayers))" }
        if let request = session.ptq.lastCalibration,
           let statistics = session.calibrationCache.statistics(for: CalibrationKey(model: model, data: request.cacheLabel)) {
            try ActivationCalibration.apply(request.estimator, statistics: statistics, to: &model)
            line += "; ranges from the cached \(request.estimator.label) calibration"
        } else {
            line += "; run 'calibrate' next"
        }
        session.commit(model, step: invocation.text)
        session.output.line(line)
    }

    static let keepFloat = CommandSpec(
        ["keep"], group: .quantization, summary: "Keep layers in float: weights and output activations",
        help: "Mixed precision: the layers' weights go back to their float values (from the model as it was before quantization) and their output activations lose their quantizers. Later 'quantize weights' and 'quantize activations' leave them alone. 'sensitivity' suggests which layers to keep.",
        positionals: [
            Positional("layers", keyword: "layer", .layers, help: "which layers, e.g. 1, 21"),
            Positional("precision", .choice(["float"]), help: "float"),
        ],
        examples: ["keep layer 1 float", "keep layer 19, 21 float"],
        changesModel: true
    ) { invocation, session in
        var model = try session.requireModel(for: "keep").model
        syncWithLoad(session)
        let layers = try invocation.layers(in: model)
        let layerNodes = model.weightLayerNodes
        var restored: [Int] = []
        let reference = try floatReference(for: session)
        for layer in layers {
            let index = layerNodes[layer - 1]
            let name = model.nodes[index].name
            session.ptq.keptFloat.insert(name)
            guard let floatIndex = reference.nodeIndex(named: name) else { continue }
            switch (model.nodes[index].operation, reference.nodes[floatIndex].operation) {
            case (.conv(let conv), .conv(let original)) where conv.precision.isQuantized:
                guard original.weight.shape == conv.weight.shape else { continue }
                var restoredConv = conv
                restoredConv.weight = original.weight
                restoredConv.bias = original.bias
                restoredConv.precision = .float32
                model.nodes[index].operation = .conv(restoredConv)
                restored.append(layer)
            case (.linear(let linear), .linear(let original)) where linear.precision.isQuantized:
                guard original.weight.shape == linear.weight.shape else { continue }
                var restoredLinear = linear
                restoredLinear.weight = original.weight
                restoredLinear.bias = original.bias
                restoredLinear.precision = .float32
                model.nodes[index].operation = .linear(restoredLinear)
                restored.append(layer)
            default:
                continue
            }
        }
        let released = ActivationQuantization.keepFloat(&model, layers: layers)
        session.commit(model, step: invocation.text)
        session.output.line("kept float: layers \(describeLayers(layers)) (\(restored.count) weight tensors restored, \(released.count) activation quantizers removed)")
    }

    // MARK: - Calibration

    static let calibrate = CommandSpec(
        ["calibrate"], group: .quantization, summary: "Set activation ranges from calibration images",
        help: """
            Runs the model with float activations over the samples (spread over the data set) once, gathering per tensor the extremes, moments, per-image extremes and a histogram of |x|; the statistics are cached by model state and data, so calling 'calibrate' again with another method does not run the model. Methods: minmax (extremes), ema (moving average of per-batch extremes; the only one that depends on 'batch'), percentile (p-th percentile of |x|), meanstd (mean +- k sigma), entropy (TensorRT: least KL divergence over a 2048-bin histogram of |x|).
            """,
        options: [
            OptionParameter("data", .text, default: .word("cifar10-train"), help: "calibration images"),
            OptionParameter("samples", .integer(1...1_000_000), default: .integer(512), help: "how many images"),
            OptionParameter("method", .choice(["minmax", "ema", "percentile", "meanstd", "entropy"]), default: .word("minmax"), help: "range estimator"),
            OptionParameter("momentum", .number(0...1), default: .number(0.9), help: "ema: weight of the running value"),
            OptionParameter("p", .number(50...100), default: .number(99.99), help: "percentile: percent of |x| kept"),
            OptionParameter("k", .number(0.1...100), default: .number(3), help: "meanstd: how many standard deviations"),
            OptionParameter("batch", .integer(1...100_000), default: .integer(64), help: "images per forward pass (changes only ema)"),
        ],
        examples: ["calibrate data=cifar10-train samples=512 method=entropy", "calibrate method=percentile p=99.99", "calibrate method=ema momentum=0.9"],
        changesModel: true
    ) { invocation, session in
        var model = try session.requireModel(for: "calibrate").model
        syncWithLoad(session)
        let request = try calibrationRequest(invocation, session: session)
        let statistics = try calibrationStatistics(for: model, request: request, session: session)
        let calibrated = try ActivationCalibration.apply(request.estimator, statistics: statistics.statistics, to: &model)
        session.ptq.lastCalibration = request
        session.commit(model, step: invocation.text)
        let clipped = calibrated.filter { $0.range.upperBound < $0.observed.upperBound || $0.range.lowerBound > $0.observed.lowerBound }.count
        let source = statistics.cached ? "cached statistics" : String(format: "statistics gathered in %.2f s", statistics.statistics.seconds)
        session.output.line("calibrated \(calibrated.count) activation tensors with \(request.estimator.label) on \(statistics.statistics.images) images of \(request.data) (\(source)); \(clipped) ranges clip the observed extremes")
        session.values["calibration_seconds"] = statistics.cached ? 0 : statistics.statistics.seconds
    }

    static func calibrationRequest(_ invocation: Invocation, session: Session) throws -> CalibrationRequest {
        let batch = invocation.int("batch") ?? 64
        let estimator: RangeEstimator
        switch invocation.string("method") ?? "minmax" {
        case "ema": estimator = .movingAverage(momentum: invocation.double("momentum") ?? 0.9, batchSize: batch)
        case "percentile": estimator = .percentile(invocation.double("p") ?? 99.99)
        case "meanstd": estimator = .meanStd(k: invocation.double("k") ?? 3)
        case "entropy": estimator = .entropy
        default: estimator = .minMax
        }
        return CalibrationRequest(data: invocation.string("data") ?? "cifar10-train", samples: invocation.int("samples") ?? 512,
                                  batchSize: batch, estimator: estimator)
    }

    /// The statistics for the model and data, from the cache or from one pass over the samples.
    static func calibrationStatistics(for model: Model, request: CalibrationRequest, session: Session) throws
        -> (statistics: CalibrationStatistics, cached: Bool)
    {
        let key = CalibrationKey(model: model, data: request.cacheLabel)
        if let cached = session.calibrationCache.statistics(for: key) { return (cached, true) }
        let dataset = try session.dataset(named: request.data)
        let indices = sampleIndices(dataset, samples: request.samples)
        let batchSize = max(1, request.batchSize)
        let batchCount = (indices.count + batchSize - 1) / batchSize
        let progress = ProgressBar("calibrate", sink: session.errors, enabled: session.settings.progress)
        defer { progress.finish() }
        let collected = try ActivationCalibration.collect(model, batchCount: batchCount, batch: { batch in
            let chunk = indices[(batch * batchSize)..<min(indices.count, (batch + 1) * batchSize)]
            progress.update(done: batch * batchSize, total: indices.count)
            return dataset.batch(chunk, normalization: model.normalization)
        }, shouldStop: { qsh_interrupt_requested() != 0 })
        guard let collected else { throw Interrupted() }
        session.calibrationCache.store(collected, for: key)
        return (collected, false)
    }

    /// `samples` images spread over the file (some files are sorted by class).
    static func sampleIndices(_ dataset: CIFAR10, samples: Int) -> [Int] {
        let count = min(max(1, samples), dataset.count)
        return Evaluation.indices(count: dataset.count, limit: count, stride: max(1, dataset.count / count))
    }

    // MARK: - Float reference

    /// Remembers the model as the float reference before its first quantization since `load`.
    static func captureFloatReference(_ model: Model, session: Session) {
        syncWithLoad(session)
        guard session.ptq.floatReference == nil else { return }
        let base = ActivationQuantization.removingQuantizers(model)
        guard !base.weightLayers.contains(where: { $0.precision.isQuantized }) else { return }
        session.ptq.floatReference = base
    }

    /// Forgets what belonged to a previously loaded model.
    static func syncWithLoad(_ session: Session) {
        let loadPrint = session.loaded.map { ActivationCalibration.fingerprint($0.model) }
        guard session.ptq.load != loadPrint else { return }
        session.ptq = PTQState()
        session.ptq.load = loadPrint
    }

    /// The float model the quantized one is compared with: the remembered reference, or the
    /// loaded model (with BN folded when the current model has none).
    static func floatReference(for session: Session) throws -> Model {
        syncWithLoad(session)
        if let reference = session.ptq.floatReference { return reference }
        guard var loaded = session.loaded?.model else {
            throw CommandError("there is no float model to compare with", hint: "load one first, e.g. 'load resnet20'")
        }
        let current = session.current?.model
        let currentHasBatchNorm = current?.nodes.contains { if case .batchNorm = $0.operation { return true } else { return false } } ?? true
        if !currentHasBatchNorm { try ModelTransforms.foldBatchNorm(&loaded) }
        return loaded
    }
}

extension CalibrationRequest {
    /// The data part of the cache key: the same images give the same statistics.
    var cacheLabel: String { "\(data) samples=\(samples)" }
}
