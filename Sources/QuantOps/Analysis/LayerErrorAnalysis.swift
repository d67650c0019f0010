import Foundation

/// How far one layer's output in the quantized model is from the float model's on the same images.
public struct LayerError: Sendable, Equatable {
    /// Weight layer number (from 1).
    public var layer: Int
    public var name: String
    /// The node whose output is compared (the end of the layer's fused chain).
    public var outputNode: String
    public var rmse: Double
    /// 10 log10(sum f^2 / sum (f - q)^2); infinite when the outputs agree exactly.
    public var sqnr: Double
    /// SQNR of the tensor the layer reads; nil for a layer that reads the raw network input.
    public var inputSQNR: Double?

    public init(layer: Int, name: String, outputNode: String, rmse: Double, sqnr: Double, inputSQNR: Double?) {
        self.layer = layer
        self.name = name
        self.outputNode = outputNode
        self.rmse = rmse
        self.sqnr = sqnr
        self.inputSQNR = inputSQNR
    }

    /// The SQNR of the noise the layer adds itself: relative noise powers add along the network,
    /// so the input's share is subtracted from the output's. Infinite when the layer adds none.
    public var ownSQNR: Double {
        let outputNoise = pow(10, -sqnr / 10)
        let inputNoise = inputSQNR.map { pow(10, -$0 / 10) } ?? 0
        return outputNoise > inputNoise ? -10 * log10(outputNoise - inputNoise) : .infinity
    }
}

public struct LayerErrorAnalysis: Sendable, Equatable {
    public var rows: [LayerError]
    public var images: Int
    /// Index into `rows` of the lowest SQNR.
    public var worst: Int?
    /// Index into `rows` of the lowest own SQNR: the layer that adds the most noise, where accuracy breaks.
    public var mostHarmful: Int?

    public init(rows: [LayerError], images: Int, worst: Int?, mostHarmful: Int?) {
        self.rows = rows
        self.images = images
        self.worst = worst
        self.mostHarmful = mostHarmful
    }
}

/// Layer-wise error analysis (methods.md §4): float and quantized models run on the same images,
/// and each weight layer's output is compared where a deployment runtime stores it.
public enum LayerAnalysis {
    public static func compare(reference: Model, quantized: Model, batchCount: Int, batch: (Int) throws -> Tensor,
                               shouldStop: (() -> Bool)? = nil) throws -> LayerErrorAnalysis? {
        let base = ActivationQuantization.removingQuantizers(quantized)
        let plan = ExecutionPlan(base)
        var quantizerOf: [String: Int] = [:]
        for (index, node) in quantized.nodes.enumerated() where node.operation.isFakeQuantize {
            if let source = node.inputs.first, source >= 0, source < quantized.nodes.count {
                quantizerOf[quantized.nodes[source].name] = index
            }
        }
        // The end of each weight layer's fused chain, and the tensor it reads.
        var chainEnd: [Int: Int] = [:]
        for (index, step) in plan.steps.enumerated() {
            guard case .fused(let fusion)? = step else { continue }
            chainEnd[fusion.head] = index
        }
        struct Row {
            var layer: Int, name: String, output: String, input: String?
        }
        var rows: [Row] = []
        for (offset, index) in base.weightLayerNodes.enumerated() {
            let output = base.nodes[chainEnd[index] ?? index].name
            let input = base.nodes[index].inputs.first.flatMap { $0 >= 0 && $0 < base.nodes.count ? base.nodes[$0].name : nil }
            rows.append(Row(layer: offset + 1, name: base.nodes[index].name, output: output, input: input))
        }
        let names = Set(rows.flatMap { [$0.output] + ($0.input.map { [$0] } ?? []) })
            .filter { reference.nodeIndex(named: $0) != nil }
        // Where each name's tensor is read in either model: the quantizer's output if there is one.
        var referenceSlot: [Int: String] = [:]
        for name in names { if let index = reference.nodeIndex(named: name) { referenceSlot[index] = name } }
        var quantizedSlot: [Int: String] = [:]
        for name in names {
            if let index = quantizerOf[name] ?? quantized.nodeIndex(named: name) { quantizedSlot[index] = name }
        }
        var signal: [String: Double] = [:], noise: [String: Double] = [:], counts: [String: Int] = [:]
        var images = 0
        let referenceExecutor = try CompiledModel(reference, observing: Set(referenceSlot.keys))
        let quantizedExecutor = try CompiledModel(quantized, observing: Set(quantizedSlot.keys))
        for index in 0..<batchCount {
            if shouldStop?() == true { return nil }
            let input = try batch(index)
            images += input.shape.first ?? 0
            var floats: [String: Tensor] = [:]
            _ = try referenceExecutor.run(input) { node, output in
                if let name = referenceSlot[node] { floats[name] = output }
            }
            var mismatch: String?
            _ = try quantizedExecutor.run(input) { node, output in
                guard let name = quantizedSlot[node], let float = floats[name] else { return }
                guard float.shape == output.shape else {
                    mismatch = name
                    return
                }
                var s = 0.0, e = 0.0
                float.data.withUnsafeBufferPointer { f in
                    output.data.withUnsafeBufferPointer { q in
                        for i in 0..<f.count {
                            let difference = Double(f[i] - q[i])
                            s += Double(f[i]) * Double(f[i])
                            e += difference * difference
                        }
                    }
                }
                signal[name, default: 0] += s
                noise[name, default: 0] += e
                counts[name, default: 0] += float.count
            }
            if let mismatch {
                throw QuantizationError(place: mismatch, problem: "has different shapes in the float and the quantized model",
                                        remedy: "compare models of the same architecture")
            }
        }
        func sqnr(_ name: String) -> Double? {
            guard let s = signal[name], let e = noise[name] else { return nil }
            return e > 0 ? 10 * log10(max(s, .leastNormalMagnitude) / e) : .infinity
        }
        var result: [LayerError] = []
        for row in rows {
            guard let outputSQNR = sqnr(row.output), let count = counts[row.output], count > 0 else { continue }
            result.append(LayerError(layer: row.layer, name: row.name, outputNode: row.output,
                                     rmse: ((noise[row.output] ?? 0) / Double(count)).squareRoot(), sqnr: outputSQNR,
                                     inputSQNR: row.input.flatMap(sqnr)))
        }
        let worst = result.indices.min { result[$0].sqnr < result[$1].sqnr }
        let mostHarmful = result.indices.min { result[$0].ownSQNR < result[$1].ownSQNR }
        return LayerErrorAnalysis(rows: result, images: images, worst: worst, mostHarmful: mostHarmful)
    }
}
