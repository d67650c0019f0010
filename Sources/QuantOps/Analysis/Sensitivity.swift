import Foundation

/// Accuracy and logit SQNR of one model variant on the sensitivity subset.
public struct VariantScore: Sendable, Equatable {
    public var top1: Double
    /// SQNR of the logits against the float model's, in dB.
    public var sqnr: Double
}

public struct LayerSensitivity: Sendable, Equatable {
    public var layer: Int
    public var name: String
    /// Only this layer quantized (weights and output activations), the rest float.
    public var alone: VariantScore
    /// Everything quantized except this layer.
    public var keptFloat: VariantScore
}

public struct SensitivityReport: Sendable, Equatable {
    public var float: VariantScore
    public var quantized: VariantScore
    public var layers: [LayerSensitivity]
    public var images: Int
    public var seconds: Double

    /// Layers whose keeping in float recovers accuracy, most first: `(layer, points gained)`.
    /// On a small subset several layers gain the same few images; the logit SQNR breaks the tie.
    public func recoveries(limit: Int = 3) -> [(layer: Int, gain: Double)] {
        let baseline = quantized.top1
        let candidates = layers.filter { $0.keptFloat.top1 > baseline }
        let ranked = candidates.sorted { (a, b) -> Bool in
            if a.keptFloat.top1 != b.keptFloat.top1 { return a.keptFloat.top1 > b.keptFloat.top1 }
            if a.keptFloat.sqnr != b.keptFloat.sqnr { return a.keptFloat.sqnr > b.keptFloat.sqnr }
            return a.layer < b.layer
        }
        return ranked.prefix(limit).map { (layer: $0.layer, gain: $0.keptFloat.top1 - baseline) }
    }
}

/// One layer at a time: quantized alone in the float model, then kept float in the quantized one.
public enum Sensitivity {
    public static func run(reference: Model, quantized: Model, images: Tensor, labels: [Int], batchSize: Int = 250,
                           shouldStop: (() -> Bool)? = nil) throws -> SensitivityReport? {
        let start = Date()
        let floatBase = ActivationQuantization.removingQuantizers(reference)
        let quantizedBase = ActivationQuantization.removingQuantizers(quantized)
        let quantizers = ActivationQuantization.quantizers(in: quantized)
        let points = ActivationQuantization.points(in: quantizedBase)
        let layerNodes = quantizedBase.weightLayerNodes

        let floatLogits = try logits(floatBase, images: images, batchSize: batchSize)
        func score(_ model: Model) throws -> VariantScore {
            let output = try logits(model, images: images, batchSize: batchSize)
            return VariantScore(top1: accuracy(output, labels: labels), sqnr: sqnr(floatLogits, output))
        }
        let floatScore = VariantScore(top1: accuracy(floatLogits, labels: labels), sqnr: .infinity)
        let quantizedScore = try score(quantized)

        var rows: [LayerSensitivity] = []
        for (offset, index) in layerNodes.enumerated() {
            if shouldStop?() == true { return nil }
            let layer = offset + 1
            let name = quantizedBase.nodes[index].name
            let own = Set(points.filter { $0.layer == layer || ($0.layer == 0 && layer == 1) }.map(\.name))

            var alone = floatBase
            copyWeights(of: name, from: quantizedBase, into: &alone)
            alone = ActivationQuantization.placing(quantizers.filter { own.contains($0.key) }, on: alone)

            var kept = quantizedBase
            copyWeights(of: name, from: floatBase, into: &kept)
            kept = ActivationQuantization.placing(quantizers.filter { !own.contains($0.key) }, on: kept)

            rows.append(LayerSensitivity(layer: layer, name: name, alone: try score(alone), keptFloat: try score(kept)))
        }
        return SensitivityReport(float: floatScore, quantized: quantizedScore, layers: rows,
                                 images: labels.count, seconds: Date().timeIntervalSince(start))
    }

    /// Replaces the weights (and bias and precision) of the named layer with `source`'s.
    static func copyWeights(of name: String, from source: Model, into target: inout Model) {
        guard let from = source.nodeIndex(named: name), let to = target.nodeIndex(named: name) else { return }
        guard let weights = source.nodes[from].operation.weightLayer, let existing = target.nodes[to].operation.weightLayer,
              weights.kind == existing.kind, weights.weight.shape == existing.weight.shape else { return }
        target.nodes[to].operation.weightLayer = weights
    }

    static func logits(_ model: Model, images: Tensor, batchSize: Int) throws -> Tensor {
        let count = images.shape.first ?? 0
        let perImage = count > 0 ? images.count / count : 0
        let compiled = try CompiledModel(model)
        var data: [Float] = []
        var classes = 0
        var start = 0
        while start < count {
            let end = min(count, start + max(1, batchSize))
            let batch = Tensor(shape: [end - start] + images.shape.dropFirst(),
                               data: Array(images.data[(start * perImage)..<(end * perImage)]))
            let output = try compiled.logits(batch)
            classes = output.shape[1]
            data += output.data
            start = end
        }
        return Tensor(shape: [count, classes], data: data)
    }

    static func accuracy(_ logits: Tensor, labels: [Int]) -> Double {
        guard logits.rank == 2, logits.shape[0] == labels.count, !labels.isEmpty else { return 0 }
        let classes = logits.shape[1]
        var hits = 0
        for (row, label) in labels.enumerated() {
            let scores = logits.data[(row * classes)..<((row + 1) * classes)]
            // Ties go to the lower index, as argmax does.
            var best = scores.startIndex
            for index in scores.indices where scores[index] > scores[best] { best = index }
            if best - scores.startIndex == label { hits += 1 }
        }
        return 100 * Double(hits) / Double(labels.count)
    }

    /// 10 log10(sum r^2 / sum (r - x)^2).
    public static func sqnr(_ reference: Tensor, _ other: Tensor) -> Double {
        var signal = 0.0, noise = 0.0
        for (r, x) in zip(reference.data, other.data) {
            signal += Double(r) * Double(r)
            noise += Double(r - x) * Double(r - x)
        }
        return noise > 0 ? 10 * log10(max(signal, .leastNormalMagnitude) / noise) : .infinity
    }
}
