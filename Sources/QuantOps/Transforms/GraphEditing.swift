extension Model {
    /// Removes single-input nodes (such as folded batch norms) and lets their consumers read the
    /// removed node's input instead; indices of the remaining nodes are renumbered.
    mutating func bypassAndRemove(_ removed: Set<Int>) {
        guard !removed.isEmpty else { return }
        func source(of index: Int) -> Int {
            var current = index
            while removed.contains(current), let input = nodes[current].inputs.first { current = input }
            return current
        }
        var newIndex = [Int](repeating: -1, count: nodes.count)
        var kept: [Node] = []
        for (index, node) in nodes.enumerated() where !removed.contains(index) {
            newIndex[index] = kept.count
            kept.append(node)
        }
        for position in kept.indices {
            kept[position].inputs = kept[position].inputs.map { newIndex[source(of: $0)] }
        }
        nodes = kept
    }

    /// The node index of weight layer `number` (counted from 1), or a clear error.
    func weightLayerNode(_ number: Int) throws -> Int {
        let layers = weightLayerNodes
        guard number >= 1, number <= layers.count else {
            throw QuantizationError(place: "layer \(number)",
                                    problem: "model \(name) has \(layers.count) layers (1...\(layers.count))")
        }
        return layers[number - 1]
    }

    /// The only consumer of `index`, or nil when it has none or several.
    func soleConsumer(of index: Int) -> Int? {
        var found: Int?
        for (candidate, node) in nodes.enumerated() where node.inputs.contains(index) {
            if found != nil { return nil }
            found = candidate
        }
        return found
    }
}
