import QuantOps

extension RuntimeValue {
    /// The layer selector a recipe value spells: `3`, `3..`, `2..7`, lists, `all`, `"layer2.*"`.
    func layerSelector() throws -> LayerSelector {
        switch self {
        case .integer(let index): return .index(index)
        case .range(let lower, let upper): return .range(lower: lower, upper: upper)
        case .string(let pattern): return .pattern(pattern)
        case .word("all"): return .all
        case .word(let name): return .pattern(name)
        case .list(let items): return .list(try items.map { try $0.layerSelector() })
        default:
            throw CommandError("'\(self)' is not a layer selector", hint: "use 3, 3.., ..5, 2..7, a list 1, 4, 7..9, all, or \"layer2.*\"")
        }
    }
}

extension Invocation {
    /// The layers a `layer SEL` argument names, resolved against the model.
    func layers(in model: Model, parameter: String = "layers") throws -> [Int] {
        guard let value = value(parameter) else { return [] }
        return try value.layerSelector().resolve(in: model)
    }
}

/// Compact text for a set of layer numbers: `3..19, 21`.
func describeLayers(_ layers: [Int]) -> String {
    var parts: [String] = []
    var index = 0
    while index < layers.count {
        var end = index
        while end + 1 < layers.count, layers[end + 1] == layers[end] + 1 { end += 1 }
        parts.append(end > index + 1 ? "\(layers[index])..\(layers[end])" : (index...end).map { String(layers[$0]) }.joined(separator: ", "))
        index = end + 1
    }
    return parts.joined(separator: ", ")
}
