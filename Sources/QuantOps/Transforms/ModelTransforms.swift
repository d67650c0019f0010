/// Whole-model rewrites: weight quantization of selected layers and batch-norm folding.
public enum ModelTransforms {
    /// What `quantize` did to one layer.
    public struct QuantizedLayer: Sendable, Equatable {
        public var layer: Int
        public var name: String
        public var precision: WeightPrecision
        /// ||W_q - W|| / ||W||.
        public var relativeError: Double
    }

    /// Fake-quantizes the weights of the given layers (numbers from 1) in place and records
    /// their precision. A layer that is already quantized is quantized again from its current values.
    @discardableResult
    public static func quantize(_ model: inout Model, layers: [Int], with quantizer: WeightQuantizer) throws
        -> [QuantizedLayer]
    {
        let targets = try layers.map { try model.weightLayerNode($0) }
        // Changes go to a copy so that a refusal halfway leaves the caller's model as it was.
        var working = model
        var results: [QuantizedLayer] = []
        for (layer, nodeIndex) in zip(layers, targets) {
            let name = working.nodes[nodeIndex].name
            do {
                guard var weights = working.nodes[nodeIndex].operation.weightLayer else { continue }
                let (values, precision) = try quantizer.quantize(weights.weight)
                results.append(QuantizedLayer(layer: layer, name: name, precision: precision,
                                              relativeError: WeightStatistics.relativeError(values, weights.weight)))
                (weights.weight, weights.precision) = (values, precision)
                working.nodes[nodeIndex].operation.weightLayer = weights
            } catch let error as QuantizationError {
                throw error.located(at: "layer \(layer) (\(name))")
            }
        }
        model = working
        return results
    }

    /// Folds every batch norm that directly follows a conv or linear node (which feeds nothing
    /// else) into that layer, methods.md §1:
    /// `s = gamma/sqrt(var+eps)`, `W_fold[j] = s_j W[j]`, `b_fold_j = beta_j + s_j (b_j - mu_j)`.
    /// The batch-norm nodes are removed and their consumers read the layer. Returns how many were folded;
    /// batch norms after other nodes stay.
    @discardableResult
    public static func foldBatchNorm(_ model: inout Model) throws -> Int {
        var folded = Set<Int>()
        // Changes go to a copy: a refusal after some layers were folded must not leave their BNs behind.
        var working = model
        for (index, node) in working.nodes.enumerated() {
            guard case .batchNorm(let norm) = node.operation, node.inputs.count == 1 else { continue }
            let producer = node.inputs[0]
            guard working.soleConsumer(of: producer) == index else { continue }
            let producerName = working.nodes[producer].name
            guard var layer = working.nodes[producer].operation.weightLayer else { continue }
            try checkFoldable(layer.precision, layer.outputChannels, norm, layer: producerName, norm: node.name)
            (layer.weight, layer.bias) = fold(weight: layer.weight, bias: layer.bias, norm)
            working.nodes[producer].operation.weightLayer = layer
            folded.insert(index)
        }
        working.bypassAndRemove(folded)
        model = working
        return folded.count
    }

    private static func checkFoldable(_ precision: WeightPrecision, _ channels: Int, _ norm: BatchNorm,
                                      layer: String, norm normName: String) throws {
        guard precision == .float32 else {
            throw QuantizationError(
                place: layer, problem: "cannot fold \(normName) into a \(precision.label) layer: folding would move its weights off the quantization grid",
                remedy: "fold bn before quantizing")
        }
        guard norm.channels == channels, norm.beta.count == channels, norm.runningMean.count == channels,
              norm.runningVar.count == channels
        else {
            throw QuantizationError(place: normName,
                                    problem: "has \(norm.channels) channels but \(layer) produces \(channels)",
                                    remedy: "the checkpoint does not match the architecture; reload it")
        }
    }

    /// The per-channel BN scale `gamma / sqrt(var + eps)` and shift `beta - scale * mu`, in Double.
    static func batchNormAffine(_ norm: BatchNorm) -> (scale: [Double], shift: [Double]) {
        var scale = [Double](repeating: 0, count: norm.channels)
        var shift = [Double](repeating: 0, count: norm.channels)
        for j in 0..<norm.channels {
            let sigma = (Double(norm.runningVar.data[j]) + Double(norm.epsilon)).squareRoot()
            scale[j] = Double(norm.gamma.data[j]) / sigma
            shift[j] = Double(norm.beta.data[j]) - scale[j] * Double(norm.runningMean.data[j])
        }
        return (scale, shift)
    }

    private static func fold(weight: Tensor, bias: Tensor?, _ norm: BatchNorm) -> (Tensor, Tensor) {
        let channels = weight.shape[0]
        let perChannel = weight.count / channels
        let (scale, shift) = batchNormAffine(norm)
        var folded = weight
        var foldedBias = [Float](repeating: 0, count: channels)
        for j in 0..<channels {
            for k in j * perChannel ..< (j + 1) * perChannel {
                folded.data[k] = Float(scale[j] * Double(weight.data[k]))
            }
            // beta + s (b - mu) = (beta - s mu) + s b
            foldedBias[j] = Float(shift[j] + scale[j] * Double(bias?.data[j] ?? 0))
        }
        return (folded, Tensor(shape: [channels], data: foldedBias))
    }
}
