import Foundation

/// Checkpoints whose quantized layers hold integer weights, as a runtime loads them: for layer
/// `L`, `L.weight` holds the codes (I8, or I32 for wider grids), `L.weight_scale` the scales (one
/// per output channel, or a 0-d tensor) and `L.weight_zero_point` the zero points, so that
/// `w = weight_scale * (weight - weight_zero_point)` per output channel. Biases and batch norm
/// stay float. The metadata entry `qsh_weight_precisions` records each layer's precision, so
/// that qsh loads the file back into the same state.
public enum IntegerCheckpoint {
    public static let precisionsKey = "qsh_weight_precisions"
    static let remedy = "The file is damaged; write it again from the quantized model"

    /// `model`'s state dict with every quantized conv and linear layer stored as integers, and the
    /// metadata entry that restores their precisions. Throws, naming the layer, when a layer's
    /// weights left their grid.
    public static func stateDict(of model: Model) throws -> (StateDict, metadata: [String: String]) {
        var dict = model.stateDict()
        var precisions: [String: Any] = [:]
        for node in model.nodes {
            guard let layer = node.operation.weightLayer else { continue }
            let (weight, precision) = (layer.weight, layer.precision)
            guard let integer = try IntegerWeights(weight: weight, precision: precision, place: node.name) else { continue }
            let type: StateDict.ElementType = integer.storage == .int8 ? .int8 : .int32
            let scaleShape = integer.isPerChannel ? [integer.scales.count] : []
            dict[node.name + ".weight"] = .init(tensor: Tensor(shape: weight.shape, data: integer.codes.map(Float.init)), elementType: type)
            dict[node.name + ".weight_scale"] = .init(tensor: Tensor(shape: scaleShape, data: integer.scales))
            dict[node.name + ".weight_zero_point"] = .init(tensor: Tensor(shape: scaleShape, data: integer.zeroPoints.map(Float.init)),
                                                           elementType: type)
            precisions[node.name] = encode(precision)
        }
        let json = try JSONSerialization.data(withJSONObject: precisions, options: [.sortedKeys])
        return (dict, [precisionsKey: String(decoding: json, as: UTF8.self)])
    }

    /// Turns integer layers of a loaded checkpoint back into float weights (removing the scale
    /// and zero-point tensors) and returns the precision of each, by layer name. A checkpoint
    /// without the metadata entry is returned unchanged.
    public static func dequantize(_ dict: inout StateDict, metadata: [String: String], file: String) throws -> [String: WeightPrecision] {
        guard let text = metadata[precisionsKey] else { return [:] }
        guard let table = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] else {
            throw CheckpointError(.corrupt, file: file, problem: "the \(precisionsKey) metadata is not a JSON object", remedy: remedy)
        }
        var precisions: [String: WeightPrecision] = [:]
        for (layer, description) in table {
            guard let precision = decode(description) else {
                throw CheckpointError(.corrupt, file: file, problem: "the \(precisionsKey) entry for \(layer) is not a weight precision", remedy: remedy)
            }
            guard let codes = dict[layer + ".weight"], let scales = dict[layer + ".weight_scale"],
                  let zeroPoints = dict[layer + ".weight_zero_point"] else {
                throw CheckpointError(.corrupt, file: file, problem: "\(layer) is recorded as integer but lacks weight, weight_scale or weight_zero_point", remedy: remedy)
            }
            let groups = scales.tensor.count
            guard groups >= 1, zeroPoints.tensor.count == groups, codes.tensor.count % groups == 0 else {
                throw CheckpointError(.corrupt, file: file, problem: "\(layer): \(groups) scales and \(zeroPoints.tensor.count) zero points for \(codes.tensor.count) weights", remedy: remedy)
            }
            let groupSize = codes.tensor.count / groups
            var values = codes.tensor.data
            for index in values.indices {
                let group = index / groupSize
                values[index] = scales.tensor.data[group] * (values[index] - zeroPoints.tensor.data[group])
            }
            dict[layer + ".weight"] = .init(tensor: Tensor(shape: codes.tensor.shape, data: values))
            dict[layer + ".weight_scale"] = nil
            dict[layer + ".weight_zero_point"] = nil
            precisions[layer] = precision
        }
        return precisions
    }

    /// Sets the recorded precision of each named layer of `model`.
    public static func apply(_ precisions: [String: WeightPrecision], to model: inout Model, file: String) throws {
        for (layer, precision) in precisions {
            guard let index = model.nodeIndex(named: layer) else {
                throw CheckpointError(.corrupt, file: file, problem: "the \(precisionsKey) metadata names \(layer), which the model does not have", remedy: remedy)
            }
            guard model.nodes[index].operation.weightLayer != nil else {
                throw CheckpointError(.corrupt, file: file, problem: "the \(precisionsKey) metadata names \(layer), which is not a conv or linear layer", remedy: remedy)
            }
            model.nodes[index].operation.weightLayer?.precision = precision
        }
    }

    static func encode(_ precision: WeightPrecision) -> [String: Any] {
        switch precision {
        case .float32: return ["kind": "float32"]
        case .ternary(let alpha): return ["kind": "ternary", "alpha": Double(alpha)]
        case .binary(let alpha): return ["kind": "binary", "alpha": Double(alpha)]
        case .uniform(let bits, let scheme, let grid):
            // Floats widen to doubles exactly, and narrow back to the same floats.
            return ["kind": "uniform", "bits": bits, "scheme": scheme.rawValue, "granularity": grid.granularity.rawValue,
                    "levels": [grid.levels.lowerBound, grid.levels.upperBound],
                    "scales": grid.scales.map(Double.init), "zeroPoints": grid.zeroPoints.map(Double.init)]
        }
    }

    static func decode(_ value: Any) -> WeightPrecision? {
        guard let object = value as? [String: Any], let kind = object["kind"] as? String else { return nil }
        switch kind {
        case "float32": return .float32
        case "ternary": return (object["alpha"] as? Double).map { .ternary(alpha: Float($0)) }
        case "binary": return (object["alpha"] as? Double).map { .binary(alpha: Float($0)) }
        case "uniform":
            guard let bits = object["bits"] as? Int, let scheme = (object["scheme"] as? String).flatMap(QuantizationScheme.init(rawValue:)),
                  let granularity = (object["granularity"] as? String).flatMap(Granularity.init(rawValue:)),
                  let levels = object["levels"] as? [Int], levels.count == 2, levels[0] <= levels[1],
                  let scales = object["scales"] as? [Double], let zeroPoints = object["zeroPoints"] as? [Double],
                  scales.count == zeroPoints.count else { return nil }
            return .uniform(bits: bits, scheme: scheme,
                            grid: QuantizationGrid(scales: scales.map(Float.init), zeroPoints: zeroPoints.map(Float.init),
                                                   levels: levels[0]...levels[1], granularity: granularity))
        default: return nil
        }
    }
}
