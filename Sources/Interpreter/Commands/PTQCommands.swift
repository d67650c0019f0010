import CShims
import Foundation
import QuantOps

/// The data and method of a `calibrate`.
public struct CalibrationRequest: Sendable {
    public var data: String
    public var samples: Int
    public var batchSize: Int
    public var estimator: RangeEstimator
    /// How the data set's images are prepared, where that can vary (image folders), so that
    /// statistics of differently prepared images are never mixed up.
    public var preparation: String? = nil
}

/// How `calibrate` turns activation statistics into ranges (`method=`).
enum CalibrationMethod: String, CaseIterable {
    case minmax, ema, percentile, meanstd, entropy
}

/// The row order of `analyze`'s table (`order=`).
enum AnalysisOrder: String, CaseIterable {
    /// Execution order.
    case model
    /// Lowest SQNR first.
    case sorted
}

/// Post-training quantization for 8-bit deployment (methods.md §4).
enum PTQCommands {
    static var all: [CommandSpec] {
        [quantizeWeights, quantizeActivations, keepFloat, calibrate, equalize, biasCorrect, analyze, sensitivity]
    }

    // MARK: - Quantization

    static let quantizeWeights = CommandSpec(
        ["quantize", "weights"], group: .quantization, summary: "Quantize weights for integer deployment (per channel by default)",
        help: "Uniform affine weights: symmetric S = max|W| / (2^(b-1) - 1) or asymmetric over [min(W,0), max(W,0)], one scale per output channel or per tensor. clip=mse shrinks each range by the factor (1 down to 0.2, in steps of 0.01) that gives the least squared weight error, which pays at 4 bits and below. Without 'layer', every layer except those 'keep layer ... float' protects. Fold BN first: the folded weights are what a runtime stores.",
        positionals: [Positional("layers", keyword: "layer", .layers, optional: true, help: "which layers (default all)")],
        options: [
            OptionParameter("bits", .integer(2...16), default: .integer(8), help: "bit width"),
            OptionParameter("scheme", .choice([QuantizationScheme.symmetric, .asymmetric]), default: .choice(QuantizationScheme.symmetric), help: "grid"),
            OptionParameter("granularity", .choice(Granularity.self), default: .choice(Granularity.channel), help: "one scale per output channel or per tensor"),
            OptionParameter("clip", .choice(WeightClipping.self), default: .choice(WeightClipping.minMax), help: "minmax: the whole range; mse: the range with the least squared error"),
        ],
        examples: ["quantize weights bits=8 scheme=symmetric granularity=channel", "quantize weights layer 2.. bits=4",
                   "quantize weights bits=4 scheme=asymmetric clip=mse"]
    ) { invocation, session in
        var model = try session.requireModel(for: "quantize weights").model
        let bits = try invocation.int("bits")
        let scheme = try invocation.choice("scheme", as: QuantizationScheme.self)
        let granularity = try invocation.choice("granularity", as: Granularity.self)
        let clipping = try invocation.choice("clip", as: WeightClipping.self)
        let requested = invocation.isSet("layers") ? try invocation.layers(in: model) : Array(1...max(1, model.weightLayerNodes.count))
        let kept = requested.filter(session.quantization.keptFloatLayers(in: model).contains)
        let layers = requested.filter { !kept.contains($0) }
        session.quantization.captureFloatReference(model)
        let results = try ModelTransforms.quantize(&model, layers: layers, with: .uniform(bits: bits, scheme: scheme, granularity: granularity, clipping: clipping))
        let meanError = results.isEmpty ? 0 : results.map(\.relativeError).reduce(0, +) / Double(results.count)
        var line = "weights \(bits)-bit \(scheme.rawValue) per \(granularity.rawValue)\(clipping == .mse ? ", MSE-clipped" : ""): \(results.count) layers (\(describeLayers(layers))), mean relative error \(String(format: "%.4f", meanError))"
        if !kept.isEmpty { line += "; kept float: \(describeLayers(kept))" }
        line += try recalibrationNote(&model, session: session)
        session.commit(model, step: invocation.text)
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
            OptionParameter("scheme", .choice(ActivationQuantizer.schemes), default: .choice(QuantizationScheme.asymmetric), help: "asymmetric (zero point) or symmetric"),
            OptionParameter("granularity", .choice([Granularity.tensor]), default: .choice(Granularity.tensor), help: "one range per tensor, as runtimes use for activations"),
        ],
        examples: ["quantize activations bits=8 scheme=asymmetric granularity=tensor", "quantize activations layer 19 bits=16"]
    ) { invocation, session in
        var model = try session.requireModel(for: "quantize activations").model
        let quantizer = ActivationQuantizer(bits: try invocation.int("bits"),
                                            scheme: try invocation.choice("scheme", as: QuantizationScheme.self))
        let layers: [Int]? = invocation.isSet("layers") ? try invocation.layers(in: model) : nil
        let keptLayers = session.quantization.keptFloatLayers(in: model).sorted()
        session.quantization.captureFloatReference(model)
        let placed = try ActivationQuantization.quantize(&model, with: quantizer, layers: layers)
        if !keptLayers.isEmpty {
            ActivationQuantization.keepFloat(&model, layers: keptLayers)
        }
        let total = ActivationQuantization.quantizers(in: model).count
        var line = "activations \(quantizer.label) per tensor: \(placed.count) tensor\(placed.count == 1 ? "" : "s")"
            + (layers == nil ? "" : " (\(describeLayers(layers ?? [])))") + ", \(total) quantized in the model, logits float"
        if !keptLayers.isEmpty { line += "; kept float: \(describeLayers(keptLayers))" }
        if let cached = session.quantization.cachedLastCalibration(for: model) {
            try ActivationCalibration.apply(cached.request.estimator, statistics: cached.statistics, to: &model)
            line += "; ranges from the cached \(cached.request.estimator.label) calibration"
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
        examples: ["keep layer 1 float", "keep layer 19, 21 float"]
    ) { invocation, session in
        var model = try session.requireModel(for: "keep").model
        let layers = try invocation.layers(in: model)
        let layerNodes = model.weightLayerNodes
        var restored: [Int] = []
        let reference = try session.quantization.floatReference(in: session.models)
        for layer in layers {
            let index = layerNodes[layer - 1]
            let name = model.nodes[index].name
            session.quantization.keptFloat.insert(name)
            guard let floatIndex = reference.nodeIndex(named: name) else { continue }
            guard var weights = model.nodes[index].operation.weightLayer, weights.precision.isQuantized,
                  let original = reference.nodes[floatIndex].operation.weightLayer, original.kind == weights.kind,
                  original.weight.shape == weights.weight.shape else { continue }
            (weights.weight, weights.bias, weights.precision) = (original.weight, original.bias, .float32)
            model.nodes[index].operation.weightLayer = weights
            restored.append(layer)
        }
        let released = ActivationQuantization.keepFloat(&model, layers: layers)
        var line = "kept float: layers \(describeLayers(layers)) (\(restored.count) weight tensors restored, \(released.count) activation quantizers removed)"
        if !restored.isEmpty { line += try recalibrationNote(&model, session: session) }
        session.commit(model, step: invocation.text)
        session.output.line(line)
    }

    // MARK: - Calibration

    static let calibrate = CommandSpec(
        ["calibrate"], group: .quantization, summary: "Set activation ranges from calibration images",
        help: """
            Runs the model with float activations over the samples (spread over the data set) once, gathering per tensor the extremes, moments, per-image extremes and a histogram of |x|; the statistics are cached by model state and data, so calling 'calibrate' again with another method does not run the model. Methods: minmax (extremes), ema (moving average of per-batch extremes; the only one that depends on 'batch'), percentile (p-th percentile of |x|), meanstd (mean +- k sigma), entropy (TensorRT: least KL divergence over a 2048-bin histogram of |x|).
            """,
        options: [
            OptionParameter("data", .text, default: .word("cifar10-train"), help: "calibration images (a data set name: cifar10-train, cifar100-train, \"imagefolder:DIR\", distilled ...)"),
            OptionParameter("samples", .integer(1...1_000_000), default: .integer(512), help: "how many images"),
            OptionParameter("method", .choice(CalibrationMethod.self), default: .choice(CalibrationMethod.minmax), help: "range estimator"),
            OptionParameter("momentum", .number(0...1), default: .number(0.9), help: "ema: weight of the running value"),
            OptionParameter("p", .number(50...100), default: .number(99.99), help: "percentile: percent of |x| kept"),
            OptionParameter("k", .number(0.1...100), default: .number(3), help: "meanstd: how many standard deviations"),
            OptionParameter("batch", .integer(1...100_000), default: .integer(64), help: "images per forward pass (changes only ema)"),
        ],
        examples: ["calibrate data=cifar10-train samples=512 method=entropy", "calibrate method=percentile p=99.99", "calibrate method=ema momentum=0.9"]
    ) { invocation, session in
        var model = try session.requireModel(for: "calibrate").model
        // Before the pass over the data, not after it.
        guard !ActivationQuantization.quantizers(in: model).isEmpty else {
            throw CommandError("'calibrate' sets the ranges of activation quantizers, and the model has none",
                               hint: "run 'quantize activations' first")
        }
        let request = try calibrationRequest(invocation, session: session)
        let statistics = try calibrationStatistics(for: model, request: request, session: session)
        let calibrated = try ActivationCalibration.apply(request.estimator, statistics: statistics.statistics, to: &model)
        session.quantization.lastCalibration = request
        session.commit(model, step: invocation.text)
        let clipped = calibrated.filter { $0.range.upperBound < $0.observed.upperBound || $0.range.lowerBound > $0.observed.lowerBound }.count
        let source = statistics.cached ? "cached statistics" : String(format: "statistics gathered in %.2f s", statistics.statistics.seconds)
        session.output.line("calibrated \(calibrated.count) activation tensors with \(request.estimator.label) on \(statistics.statistics.images) images of \(request.data) (\(source)); \(clipped) ranges clip the observed extremes")
        session.values["calibration_seconds"] = statistics.cached ? 0 : statistics.statistics.seconds
    }

    static func calibrationRequest(_ invocation: Invocation, session: Session) throws -> CalibrationRequest {
        let batch = try invocation.int("batch")
        let estimator: RangeEstimator
        switch try invocation.choice("method", as: CalibrationMethod.self) {
        case .minmax: estimator = .minMax
        case .ema: estimator = .movingAverage(momentum: try invocation.double("momentum"), batchSize: batch)
        case .percentile: estimator = .percentile(try invocation.double("p"))
        case .meanstd: estimator = .meanStd(k: try invocation.double("k"))
        case .entropy: estimator = .entropy
        }
        let data = try invocation.string("data")
        return CalibrationRequest(data: data, samples: try invocation.int("samples"),
                                  batchSize: batch, estimator: estimator,
                                  preparation: ImageFolderName.folder(in: data).map { session.readingOptions(forFolder: $0).description })
    }

    /// The statistics for the model and data, from the cache or from one pass over the samples.
    static func calibrationStatistics(for model: Model, request: CalibrationRequest, session: Session) throws
        -> (statistics: CalibrationStatistics, cached: Bool)
    {
        let key = CalibrationKey(model: model, data: request.cacheLabel)
        if let cached = session.quantization.calibrationCache.statistics(for: key) { return (cached, true) }
        let dataset = try session.dataset(named: request.data)
        let diskIdentity = dataset.contentIdentity
        if let store = session.quantization.calibrationStore, let diskIdentity,
           let stored = store.load(key, dataIdentity: diskIdentity) {
            session.quantization.calibrationCache.store(stored, for: key)
            return (stored, true)
        }
        let indices = try dataset.sampleIndices(max(1, request.samples))
        let batchSize = max(1, request.batchSize)
        let batchCount = (indices.count + batchSize - 1) / batchSize
        let progress = ProgressBar("calibrate", sink: session.errors, enabled: session.settings.progress)
        defer { progress.finish() }
        let collected = try ActivationCalibration.collect(model, batchCount: batchCount, batch: { batch in
            let chunk = indices[(batch * batchSize)..<min(indices.count, (batch + 1) * batchSize)]
            progress.update(done: batch * batchSize, total: indices.count)
            return try dataset.batch(chunk, normalization: model.normalization)
        }, shouldStop: { qsh_interrupt_requested() != 0 })
        guard let collected else { throw Interrupted() }
        session.quantization.calibrationCache.store(collected, for: key)
        if let store = session.quantization.calibrationStore, let diskIdentity {
            do {
                try store.save(collected, for: key, dataIdentity: diskIdentity)
            } catch {
                session.errors.line("warning: could not keep the calibration in \(store.directory.path): \(error.localizedDescription)")
            }
        }
        return (collected, false)
    }

    /// After the weights changed, calibrated activation ranges describe the old model: re-apply
    /// the last calibration when its statistics for the new model are cached, else say so.
    static func recalibrationNote(_ model: inout Model, session: Session) throws -> String {
        let quantizers = ActivationQuantization.quantizers(in: model)
        guard quantizers.values.contains(where: { $0.range != nil }) else { return "" }
        if let cached = session.quantization.cachedLastCalibration(for: model) {
            try ActivationCalibration.apply(cached.request.estimator, statistics: cached.statistics, to: &model)
            return "; ranges from the cached \(cached.request.estimator.label) calibration"
        }
        return "; activation ranges are from the previous weights: run 'calibrate' again"
    }

    // MARK: - Data-free tools

    static let equalize = CommandSpec(
        ["equalize"], group: .quantization, summary: "Cross-layer equalization of conv pairs with a ReLU between them",
        help: "For conv1 -> ReLU -> conv2: output channel j of conv1 is divided by s_j = sqrt(r1_j / r2_j) and input channel j of conv2 multiplied by it (r: per-channel weight ranges), so both ranges become sqrt(r1_j r2_j). ReLU commutes with positive scales, so the float logits do not change. Needs BN folded and float weights: run after 'fold bn', before 'quantize'.",
        examples: ["fold bn; equalize; quantize weights granularity=tensor"]
    ) { invocation, session in
        var model = try session.requireModel(for: "equalize").model
        var priors = try session.quantization.channelPriors(describing: model, in: session.models)
        let pairs = try Equalization.apply(&model)
        guard !pairs.isEmpty else {
            session.output.line("no conv -> ReLU -> conv pair to equalize")
            return
        }
        BiasCorrection.rescale(&priors, for: pairs)
        session.quantization.recordEqualized(model, priors: priors)
        session.commit(model, step: invocation.text)
        let scales = pairs.flatMap(\.scales)
        session.output.line(String(format: "equalized %d conv pairs; channel scales in [%.3f, %.3f]", pairs.count,
                                   scales.min() ?? 1, scales.max() ?? 1))
    }

    static let biasCorrect = CommandSpec(
        ["biascorrect"], group: .quantization, summary: "Data-free bias correction of quantized layers",
        help: "Subtracts E[(W_q - W) x] from each quantized layer's bias. E[x] per input channel comes from batch-norm statistics: the pre-activation of a conv followed by BN is N(beta, gamma^2), a ReLU turns it into a clipped normal, residual adds sum the means. The statistics are taken from the loaded model's batch norms (and follow 'equalize'), so it works after 'fold bn'. Run after 'quantize weights'.",
        examples: ["fold bn; quantize weights bits=4; biascorrect"]
    ) { invocation, session in
        var model = try session.requireModel(for: "biascorrect").model
        guard model.hasQuantizedWeights else {
            throw CommandError("'biascorrect' corrects quantized layers, and no layer is quantized", hint: "run 'quantize weights' first")
        }
        let reference = try session.quantization.floatReference(in: session.models)
        var priors = try session.quantization.channelPriors(describing: reference, in: session.models)
        // Batch norms still in the model describe their layers directly.
        priors.merge(BiasCorrection.priors(fromBatchNormsOf: model)) { _, current in current }
        let corrected = try BiasCorrection.correct(&model, reference: reference, priors: priors)
        guard !corrected.isEmpty else {
            throw CommandError("no quantized layer has an input the batch-norm statistics describe",
                               hint: "bias correction needs batch norms in the loaded model")
        }
        session.commit(model, step: invocation.text)
        session.output.line(String(format: "bias-corrected %d layers (%@); largest expected shift removed %.4g",
                                   corrected.count, describeLayers(corrected.map(\.layer)),
                                   corrected.map(\.largestShift).max() ?? 0))
    }

    // MARK: - Analysis

    /// The analysis commands compare with the float model; with nothing quantized there is
    /// nothing to compare, so they say what to run instead of reporting infinite SQNRs.
    static func requireSomethingQuantized(_ model: Model, for command: String) throws {
        guard model.hasQuantizedWeights
                || !ActivationQuantization.quantizers(in: model).isEmpty else {
            throw CommandError("'\(command)' compares the quantized model with the float one, and nothing is quantized",
                               hint: "run 'quantize weights' and/or 'quantize activations' first")
        }
    }

    static let analyze = CommandSpec(
        ["analyze"], group: .analysis, summary: "Per-layer error of the quantized model against the float one",
        help: "Runs the float model (as it was before quantization) and the quantized model on the same calibration images and compares, for each layer, the output a runtime stores (after its fused BN/add/ReLU and its activation quantizer): RMSE and SQNR = 10 log10(sum f^2 / sum (f - q)^2). 'own dB' removes the noise the layer's input already carried (noise powers add), so its lowest value marks the layer that breaks accuracy. The result is kept as sqnr_min, sqnr_worst_layer and sqnr_harmful_layer.",
        options: [
            OptionParameter("data", .text, default: .word("cifar10-train"), help: "images to compare on (a data set name: cifar10-train, cifar100-train, \"imagefolder:DIR\", distilled ...)"),
            OptionParameter("samples", .integer(1...100_000), default: .integer(256), help: "how many images"),
            OptionParameter("order", .choice(AnalysisOrder.self), default: .choice(AnalysisOrder.model), help: "model order, or worst SQNR first"),
            OptionParameter("batch", .integer(1...10_000), default: .integer(32), help: "images per forward pass"),
        ],
        examples: ["analyze data=cifar10-train samples=256", "analyze order=sorted"]
    ) { invocation, session in
        let state = try session.requireModel(for: "analyze")
        try requireSomethingQuantized(state.model, for: "analyze")
        let reference = try session.quantization.floatReference(in: session.models)
        let name = try invocation.string("data")
        let dataset = try session.dataset(named: name)
        let indices = try dataset.sampleIndices(try invocation.int("samples"))
        let batchSize = try invocation.int("batch")
        let progress = ProgressBar("analyze", sink: session.errors, enabled: session.settings.progress)
        let result = try LayerAnalysis.compare(
            reference: reference, quantized: state.model, batchCount: (indices.count + batchSize - 1) / batchSize,
            batch: { batch in
                progress.update(done: batch * batchSize, total: indices.count)
                return try dataset.batch(indices[(batch * batchSize)..<min(indices.count, (batch + 1) * batchSize)],
                                     normalization: state.model.normalization)
            }, shouldStop: { qsh_interrupt_requested() != 0 })
        progress.finish()
        guard let analysis = result else { throw Interrupted() }
        session.quantization.lastAnalysis = analysis
        var order = Array(analysis.rows.indices)
        switch try invocation.choice("order", as: AnalysisOrder.self) {
        case .model: break
        case .sorted: order.sort { analysis.rows[$0].sqnr < analysis.rows[$1].sqnr }
        }
        var table = TextTable(["layer", "name", "RMSE", "SQNR dB", "own dB", ""],
                              alignments: [.right, .left, .right, .right, .right, .left])
        for index in order {
            let row = analysis.rows[index]
            var marks: [String] = []
            if index == analysis.worst { marks.append("<- worst") }
            if index == analysis.mostHarmful { marks.append("<- adds the most noise") }
            table.add([String(row.layer), row.name, String(format: "%.4g", row.rmse), decibels(row.sqnr),
                       decibels(row.ownSQNR), marks.joined(separator: " ")])
        }
        session.output.line("layer-wise error on \(analysis.images) images of \(name), float reference vs \(state.summary)")
        session.output.line(table.render())
        if let worst = analysis.worst {
            session.values["sqnr_min"] = analysis.rows[worst].sqnr
            session.values["sqnr_worst_layer"] = Double(analysis.rows[worst].layer)
        }
        if let harmful = analysis.mostHarmful {
            session.values["sqnr_harmful_layer"] = Double(analysis.rows[harmful].layer)
            session.output.line("layer \(analysis.rows[harmful].layer) adds the most noise; try 'keep layer \(analysis.rows[harmful].layer) float' or 'quantize activations layer \(analysis.rows[harmful].layer) bits=16'")
        }
    }

    static let sensitivity = CommandSpec(
        ["sensitivity"], group: .analysis, summary: "Quantize one layer at a time, then keep one layer float at a time",
        help: "For every layer: accuracy and logit SQNR with only that layer quantized (weights and output activations; the rest float), then with only that layer float (the rest quantized), on the first images of a labelled data set. Suggests the 'keep layer N float' lines that recover the most accuracy.",
        options: [
            OptionParameter("data", .text, default: .word("cifar10"), help: "labelled images (a data set name: cifar10-train, cifar100-train, \"imagefolder:DIR\", distilled ...)"),
            OptionParameter("stride", .integer(1...10_000), default: .integer(1), help: "every K-th image"),
            OptionParameter("samples", .integer(1...100_000), default: .integer(250), help: "at most this many images after striding"),
            OptionParameter("suggest", .integer(0...100), default: .integer(3), help: "how many 'keep' lines to suggest"),
        ],
        examples: ["sensitivity", "sensitivity samples=500", "sensitivity stride=10 samples=500", "sensitivity data=\"imagefolder:imagenet/val\" samples=100"]
    ) { invocation, session in
        let state = try session.requireModel(for: "sensitivity")
        try requireSomethingQuantized(state.model, for: "sensitivity")
        let reference = try session.quantization.floatReference(in: session.models)
        let name = try invocation.string("data")
        let dataset = try session.dataset(named: name)
        let (samples, stride) = (try invocation.int("samples"), try invocation.int("stride"))
        try dataset.requireRecords((samples - 1) * stride + 1)
        let indices = Evaluation.indices(count: dataset.count, limit: samples, stride: stride)
        let images = try dataset.batch(indices, normalization: state.model.normalization)
        let labels = dataset.labels(of: indices)
        let result = try Sensitivity.run(reference: reference, quantized: state.model, images: images, labels: labels,
                                         shouldStop: { qsh_interrupt_requested() != 0 })
        guard let report = result else { throw Interrupted() }
        session.quantization.lastSensitivity = report
        var table = TextTable(["layer", "name", "alone top-1", "alone dB", "kept float top-1", "kept dB"],
                              alignments: [.right, .left, .right, .right, .right, .right])
        for row in report.layers {
            table.add([String(row.layer), row.name, String(format: "%.2f", row.alone.top1), decibels(row.alone.sqnr),
                       String(format: "%.2f", row.keptFloat.top1), decibels(row.keptFloat.sqnr)])
        }
        session.output.line(String(format: "sensitivity on %d images of %@ (stride %d): float %.2f%%, quantized %.2f%% (logit SQNR %@), %.1f s",
                                   report.images, name, stride, report.float.top1, report.quantized.top1,
                                   decibels(report.quantized.sqnr), report.seconds))
        session.output.line(table.render())
        session.values["sensitivity_seconds"] = report.seconds
        let recoveries = report.recoveries(limit: try invocation.int("suggest"))
        if recoveries.isEmpty {
            session.output.line("no single layer kept float improves accuracy on this subset")
        } else {
            session.output.line("suggested mixed precision (then 'calibrate' again):")
            for recovery in recoveries {
                session.output.line(String(format: "  keep layer %d float   # +%.2f points", recovery.layer, recovery.gain))
            }
        }
    }

    static func decibels(_ value: Double) -> String {
        value.isFinite ? String(format: "%.1f", value) : "inf"
    }
}

extension CalibrationRequest {
    /// The data part of the cache key: the same images give the same statistics.
    var cacheLabel: String { "\(data) samples=\(samples)" + (preparation.map { " " + $0 } ?? "") }
}
