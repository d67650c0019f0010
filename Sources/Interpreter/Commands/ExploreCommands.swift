import Foundation
import QuantOps

/// Commands to look at a model and to move between its states: layers, stats, diff, undo, snapshots.
enum ExploreCommands {
    static var all: [CommandSpec] {
        [layers, stats, diff, results, reset, undo, snapshot, restore]
    }

    /// Model size as the papers count it: bits times parameters, in MiB, float layers at 32 bits.
    static func megabytes(bits: Double, parameters: Int) -> Double {
        bits * Double(parameters) / 8 / 1_048_576
    }

    static let layers = CommandSpec(
        ["layers"], group: .model, summary: "Table of the weight layers: shape, parameters, precision, size",
        help: "Layers are the conv and linear nodes counted from 1 in execution order; selectors such as 'layer 3..' use these numbers. Size in MB is bits times parameters (float layers at 32 bits), as in the DF-MPC paper's tables. With 'set engine=int8' (or engine=int8 here), an engine column says which layers run on integers, and notes below say why the others run in float.",
        options: [OptionParameter("engine", .choice(Arithmetic.self),
                                  help: "show where each layer runs under this engine (default: 'set engine')")],
        examples: ["layers", "layers engine=int8"]
    ) { invocation, session in
        let state = try session.requireModel(for: "layers")
        // Without engine=, the session's setting: a default that 'set' changes, so not a declared one.
        let engine = try invocation.optionalChoice("engine", as: Arithmetic.self) ?? session.settings.engine
        let placements = engine == .int8 ? IntegerPlan.of(state.model).layers.map(\.placement) : nil
        var columns = ["#", "name", "type", "shape", "params", "precision", "MB"]
        var alignments: [TextTable.Alignment] = [.right, .left, .left, .left, .right, .left, .right]
        if placements != nil {
            columns.append("engine")
            alignments.append(.left)
        }
        var table = TextTable(columns, alignments: alignments)
        var reasons: [String] = []
        var totalParameters = 0
        var totalMegabytes = 0.0
        for (offset, layer) in state.model.weightLayers.enumerated() {
            let size = megabytes(bits: layer.precision.bits, parameters: layer.parameterCount)
            totalParameters += layer.parameterCount
            totalMegabytes += size
            var row = [String(layer.number), layer.name, layer.kind, layer.kernelShape.map(String.init).joined(separator: "x"),
                       String(layer.parameterCount), layer.precision.label, String(format: "%.4f", size)]
            switch placements?[offset] {
            case .int8?:
                row.append("int8")
            case .float(let reason)?:
                // Layers that share a reason share its note number.
                let note = (reasons.firstIndex(of: reason) ?? reasons.count) + 1
                if note > reasons.count { reasons.append(reason) }
                row.append("float [\(note)]")
            case nil:
                break
            }
            table.add(row)
        }
        table.add(["", "total", "", "", String(totalParameters), "", String(format: "%.4f", totalMegabytes)]
                  + (placements == nil ? [] : [""]))
        session.output.line(table.render())
        for (number, reason) in reasons.enumerated() { session.output.line("[\(number + 1)] \(reason)") }
    }

    static let stats = CommandSpec(
        ["stats"], group: .analysis, summary: "Statistics and a histogram of one layer's weights",
        positionals: [Positional("layer", keyword: "layer", .integer(1...100_000), help: "the layer number")],
        options: [OptionParameter("bins", .integer(2...200), default: .integer(20), help: "histogram bins")],
        examples: ["stats layer 3"]
    ) { invocation, session in
        let state = try session.requireModel(for: "stats")
        let number = try invocation.int("layer")
        let layers = state.model.weightLayers
        guard number <= layers.count else {
            throw CommandError("layer \(number) does not exist", hint: "\(state.model.name) has layers 1...\(layers.count); see 'layers'")
        }
        let info = layers[number - 1]
        let weight = try state.model.weightTensor(layer: number)
        let statistics = WeightStatistics(weight)
        session.output.line("layer \(number) \(info.name) (\(info.kind) \(info.kernelShape.map(String.init).joined(separator: "x")), \(info.precision.label))")
        session.output.line(String(format: "  min %.6g  max %.6g  mean %.6g  std %.6g", statistics.min, statistics.max, statistics.mean, statistics.std))
        session.output.line(String(format: "  zeros %.2f%%  distinct values %d  count %d", statistics.zeroFraction * 100, statistics.distinctLevels, statistics.count))
        let bins = statistics.histogram(bins: try invocation.int("bins"))
        let peak = max(1, bins.map(\.count).max() ?? 1)
        for bin in bins {
            let bar = String(repeating: "#", count: Int((Double(bin.count) / Double(peak) * 40).rounded()))
            session.output.line(String(format: "  %11.4g .. %11.4g %7d ", bin.lower, bin.upper, bin.count) + bar)
        }
    }

    static let diff = CommandSpec(
        ["diff"], group: .analysis, summary: "Changed layers against the loaded model: precision and relative weight error",
        examples: ["diff"]
    ) { _, session in
        let state = try session.requireModel(for: "diff")
        guard let loaded = session.loaded else { return }
        let before = Dictionary(loaded.model.weightLayers.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        var table = TextTable(["#", "name", "was", "now", "rel. error"], alignments: [.right, .left, .left, .left, .right])
        var changed = 0
        for layer in state.model.weightLayers {
            let now = try state.model.weightTensor(layer: layer.number)
            guard let original = before[layer.name], let was = try? loaded.model.weightTensor(layer: original.number) else {
                table.add([String(layer.number), layer.name, "-", layer.precision.label, "new"])
                changed += 1
                continue
            }
            guard now != was || original.precision != layer.precision else { continue }
            changed += 1
            let error = now.shape == was.shape ? String(format: "%.4f", WeightStatistics.relativeError(now, was)) : "shape changed"
            table.add([String(layer.number), layer.name, original.precision.label, layer.precision.label, error])
        }
        let steps = state.steps.isEmpty ? "none" : state.steps.joined(separator: "; ")
        session.output.line("steps since load: \(steps)")
        session.output.line(changed == 0 ? "no layer differs from the loaded model" : table.render())
    }

    static let results = CommandSpec(
        ["results"], group: .analysis, summary: "Every eval of the session as a table",
        examples: ["results"]
    ) { _, session in
        guard !session.evaluations.isEmpty else {
            session.output.line("no evaluations yet: run 'eval cifar10'")
            return
        }
        session.output.line(resultsTable(session.evaluations))
    }

    /// The `results` table; `qsh merge` prints the same for the shards of a run.
    static func resultsTable(_ evaluations: [EvaluationRecord]) -> String {
        var table = TextTable(["#", "model state", "data", "images", "top-1", "top-5"],
                              alignments: [.right, .left, .left, .right, .right, .right])
        for (index, record) in evaluations.enumerated() {
            table.add([String(index + 1), record.state, record.dataset, String(record.images),
                       String(format: "%.2f", record.top1), String(format: "%.2f", record.top5)])
        }
        return table.render()
    }

    static let reset = CommandSpec(
        ["reset"], group: .model, summary: "Return to the model as loaded", examples: ["reset"]
    ) { _, session in
        _ = try session.requireModel(for: "reset")
        guard let loaded = session.loaded else { return }
        session.move(to: loaded)
        session.output.line("back to \(loaded.origin) as loaded")
    }

    static let undo = CommandSpec(
        ["undo"], group: .model, summary: "Step back over the last model change (repeatable)",
        positionals: [Positional("steps", .integer(1...ModelHistory.undoDepth), default: .integer(1), help: "how many changes to undo")],
        examples: ["undo", "undo 2"]
    ) { invocation, session in
        try session.undo(try invocation.int("steps"))
        session.output.line("now: " + (session.current?.summary ?? "no model"))
    }

    static let snapshot = CommandSpec(
        ["snapshot"], group: .model, summary: "Remember the current model under a name",
        positionals: [Positional("name", .text, help: "a name for 'restore'")],
        examples: ["snapshot ternary"]
    ) { invocation, session in
        _ = try session.requireModel(for: "snapshot")
        let name = try invocation.string("name")
        let state = try session.takeSnapshot(named: name)
        session.output.line("snapshot '\(name)': \(state.summary)")
    }

    static let restore = CommandSpec(
        ["restore"], group: .model, summary: "Return to a named snapshot",
        positionals: [Positional("name", .text, help: "a name given to 'snapshot'")],
        examples: ["restore ternary"]
    ) { invocation, session in
        let name = try invocation.string("name")
        guard let state = session.models.snapshots[name] else {
            let names = session.models.snapshots.keys.sorted()
            throw CommandError("no snapshot named '\(name)'",
                               hint: names.isEmpty ? "take one with 'snapshot NAME'" : "snapshots: " + names.joined(separator: ", "))
        }
        session.move(to: state)
        session.output.line("restored '\(name)': \(state.summary)")
    }
}

extension Model {
    /// The weights of layer `number` (from 1).
    func weightTensor(layer number: Int) throws -> Tensor {
        let layers = weightLayerNodes
        guard number >= 1, number <= layers.count else {
            throw CommandError("layer \(number) does not exist", hint: "\(name) has layers 1...\(layers.count); see 'layers'")
        }
        guard let layer = nodes[layers[number - 1]].operation.weightLayer else {
            throw CommandError("layer \(number) has no weights")
        }
        return layer.weight
    }
}
