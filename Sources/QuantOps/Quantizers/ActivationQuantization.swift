/// Where activation fake quantizers go: on the tensors a deployment runtime materializes after
/// fusing conv + BN (+ residual add) + ReLU, that is the network input, the output of each fused
/// conv chain, each unfused add/ReLU/BN, and each pooling. The option-A shortcut and flatten
/// only move values that are already on a grid, and the logits stay float (a runtime
/// dequantizes the last layer's accumulator; argmax needs no requantization).
public struct ActivationPoint: Sendable, Equatable {
    /// The node whose output is quantized, in the model without quantizers.
    public var nodeIndex: Int
    public var name: String
    /// The weight layer (from 1) that heads the fused chain producing the tensor; 0 for the
    /// network input; nil for pooling and unfused element-wise nodes.
    public var layer: Int?
}

public enum ActivationQuantization {
    /// The suffix of an inserted quantizer's node name, after the producer's name.
    public static let nodeSuffix = ".aq"

    /// The model with every activation quantizer removed: the graph the float activations run on.
    public static func removingQuantizers(_ model: Model) -> Model {
        var stripped = model
        let quantizerNodes = Set(model.nodes.indices.filter { model.nodes[$0].operation.isFakeQuantize })
        stripped.bypassAndRemove(quantizerNodes)
        return stripped
    }

    /// The activation quantizers of a model, by the name of the node whose output each rounds.
    public static func quantizers(in model: Model) -> [String: ActivationQuantizer] {
        var result: [String: ActivationQuantizer] = [:]
        for node in model.nodes {
            guard case .fakeQuantize(let quantizer) = node.operation, let source = node.inputs.first,
                  source >= 0, source < model.nodes.count else { continue }
            result[model.nodes[source].name] = quantizer
        }
        return result
    }

    /// The tensors a deployment runtime would quantize, in execution order.
    public static func points(in model: Model) -> [ActivationPoint] {
        let base = removingQuantizers(model)
        let plan = ExecutionPlan(base)
        var layerOfNode: [Int: Int] = [:]
        for (offset, index) in base.weightLayerNodes.enumerated() { layerOfNode[index] = offset + 1 }
        var points: [ActivationPoint] = []
        for (index, node) in base.nodes.enumerated() where index < base.nodes.count - 1 {
            guard let step = plan.steps[index] else { continue }
            switch step {
            case .fused(let fusion):
                points.append(ActivationPoint(nodeIndex: index, name: node.name, layer: layerOfNode[fusion.head]))
            case .single:
                switch node.operation {
                case .input:
                    points.append(ActivationPoint(nodeIndex: index, name: node.name, layer: 0))
                case .conv, .linear:
                    points.append(ActivationPoint(nodeIndex: index, name: node.name, layer: layerOfNode[index]))
                case .batchNorm, .relu, .relu6, .add, .averagePool, .maxPool, .globalAveragePool, .concat, .multiply, .pointwise:
                    points.append(ActivationPoint(nodeIndex: index, name: node.name, layer: nil))
                case .shortcutA, .flatten, .fakeQuantize:
                    continue
                }
            }
        }
        return points
    }

    /// Puts `quantizer` on the activation points: all of them when `layers` is nil, otherwise the
    /// outputs of those weight layers (layer 1 also takes the network input). A point that already
    /// has a quantizer gets the new one, uncalibrated. Returns the points that changed.
    @discardableResult
    public static func quantize(_ model: inout Model, with quantizer: ActivationQuantizer, layers: [Int]? = nil) throws
        -> [ActivationPoint]
    {
        try ActivationQuantizer.validate(bits: quantizer.bits, scheme: quantizer.scheme)
        let selected = points(in: model).filter { point in
            guard let layers else { return true }
            guard let layer = point.layer else { return false }
            return layers.contains(layer) || (layer == 0 && layers.contains(1))
        }
        var assignments = quantizers(in: model)
        for point in selected { assignments[point.name] = quantizer }
        model = placing(assignments, on: removingQuantizers(model))
        return selected
    }

    /// Removes the quantizers on the outputs of the given layers (layer 1 also the network input).
    @discardableResult
    public static func keepFloat(_ model: inout Model, layers: [Int]) -> [ActivationPoint] {
        var assignments = quantizers(in: model)
        let released = points(in: model).filter { point in
            guard let layer = point.layer, assignments[point.name] != nil else { return false }
            return layers.contains(layer) || (layer == 0 && layers.contains(1))
        }
        for point in released { assignments[point.name] = nil }
        model = placing(assignments, on: removingQuantizers(model))
        return released
    }

    /// Sets the range of each quantizer from `ranges` (by producer name); others keep theirs.
    public static func setRanges(_ model: inout Model, _ ranges: [String: ClosedRange<Float>]) {
        for index in model.nodes.indices {
            guard case .fakeQuantize(var quantizer) = model.nodes[index].operation,
                  let source = model.nodes[index].inputs.first, source >= 0, source < model.nodes.count,
                  let range = ranges[model.nodes[source].name] else { continue }
            quantizer.range = range
            model.nodes[index].operation = .fakeQuantize(quantizer)
        }
    }

    /// Rebuilds `base` (a model without quantizers) with a quantizer node right after each named
    /// producer; every consumer of the producer reads the quantized tensor instead.
    static func placing(_ assignments: [String: ActivationQuantizer], on base: Model) -> Model {
        var nodes: [Node] = []
        var newIndex = [Int](repeating: -1, count: base.nodes.count)
        for (index, node) in base.nodes.enumerated() {
            var copy = node
            copy.inputs = node.inputs.map { $0 >= 0 && $0 < index ? newIndex[$0] : $0 }
            nodes.append(copy)
            newIndex[index] = nodes.count - 1
            if let quantizer = assignments[node.name] {
                nodes.append(Node(name: node.name + nodeSuffix, operation: .fakeQuantize(quantizer), inputs: [nodes.count - 1]))
                newIndex[index] = nodes.count - 1
            }
        }
        var result = base
        result.nodes = nodes
        return result
    }
}

extension Operation {
    public var isFakeQuantize: Bool {
        if case .fakeQuantize = self { return true }
        return false
    }
}
