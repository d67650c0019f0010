/// Export of a model's current weights under PyTorch's key names; the inverse of `ModelZoo.build`.
extension Model {
    public func stateDict() -> StateDict {
        var dict = StateDict()
        for node in nodes {
            if let layer = node.operation.weightLayer {
                dict[node.name + ".weight"] = .init(tensor: layer.weight)
                if let bias = layer.bias { dict[node.name + ".bias"] = .init(tensor: bias) }
                continue
            }
            switch node.operation {
            case .batchNorm(let norm):
                dict[node.name + ".weight"] = .init(tensor: norm.gamma)
                dict[node.name + ".bias"] = .init(tensor: norm.beta)
                dict[node.name + ".running_mean"] = .init(tensor: norm.runningMean)
                dict[node.name + ".running_var"] = .init(tensor: norm.runningVar)
                if let tracked = norm.batchesTracked {
                    // PyTorch stores the counter as a 0-d int64 tensor.
                    dict[node.name + ".num_batches_tracked"] = .init(tensor: Tensor(shape: [], data: [Float(tracked)]),
                                                                     elementType: .int64)
                }
            default:
                break
            }
        }
        return dict
    }
}

/// One row of a `layers` table: a conv or linear node with its layer number.
public struct WeightLayerInfo: Sendable, Equatable {
    /// Counted from 1 in execution order, as layer selectors count.
    public var number: Int
    public var nodeIndex: Int
    public var name: String
    public var kind: String
    /// (out, in/groups, kh, kw) for convolutions, (out, in) for linear layers.
    public var kernelShape: [Int]
    public var parameterCount: Int
    public var precision: WeightPrecision
}

extension Model {
    public var weightLayers: [WeightLayerInfo] {
        weightLayerNodes.enumerated().compactMap { offset, index in
            let node = nodes[index]
            guard let layer = node.operation.weightLayer else { return nil }
            return WeightLayerInfo(number: offset + 1, nodeIndex: index, name: node.name, kind: layer.kind.rawValue,
                                   kernelShape: layer.weight.shape, parameterCount: layer.parameterCount, precision: layer.precision)
        }
    }

    /// Parameters of all weight layers and batch norms (not running statistics).
    public var parameterCount: Int {
        nodes.reduce(0) { total, node in
            if let layer = node.operation.weightLayer { return total + layer.parameterCount }
            switch node.operation {
            case .batchNorm(let norm): return total + 2 * norm.channels
            default: return total
            }
        }
    }
}
