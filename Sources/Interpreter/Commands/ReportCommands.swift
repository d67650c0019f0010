import Foundation
import QuantOps

/// Commands that turn a session into figures and machine-readable reports.
enum ReportCommands {
    static var all: [CommandSpec] {
        [plotHistogram, plotAnalysis, plotResults, report]
    }

    static let plotHistogram = CommandSpec(
        ["plot", "hist"], group: .analysis, summary: "SVG histogram of a layer's weights: float against quantized",
        help: "One panel per state of the layer, on a shared value axis: the float weights before quantization, the weights as first quantized, and the weights now when a later step (such as 'compensate dfmpc') changed them, as in the DF-MPC paper's Fig. 4. The states come from the undo history.",
        positionals: [
            Positional("layer", keyword: "layer", .integer(1...100_000), help: "the layer number (see 'layers')"),
            Positional("file", keyword: "to", .path, help: "the .svg file to write"),
        ],
        options: [OptionParameter("bins", .integer(2...400), default: .integer(60), help: "histogram bins")],
        examples: ["plot hist layer 3 to \"layer3.svg\""]
    ) { invocation, session in
        let number = try invocation.int("layer")
        let path = try invocation.string("file")
        let current = try session.requireModel(for: "plot hist")
        let layers = current.model.weightLayers
        guard number >= 1, number <= layers.count else {
            throw CommandError("layer \(number) does not exist", hint: "\(current.model.name) has layers 1...\(layers.count); see 'layers'")
        }
        let states = try histogramStates(layer: number, session: session)
        let figure = WeightHistogramFigure(
            title: "Layer \(number) (\(layers[number - 1].name)): float against quantized weights",
            series: states, bins: try invocation.int("bins"))
        try figure.render().write(to: path)
        session.output.line("wrote \(path): layer \(number), \(states.count) state\(states.count == 1 ? "" : "s")")
    }

    /// The layer's weights worth comparing, oldest first: the last float state before quantization,
    /// the first quantized state, and the current one if it differs from that.
    static func histogramStates(layer number: Int, session: Session) throws -> [WeightHistogramFigure.Series] {
        struct Snapshot {
            var values: [Float]
            var precision: WeightPrecision
            var step: String?
        }
        let lineage = ([session.loaded] + session.models.undoStack + [session.current]).compactMap { $0 }
        var snapshots: [Snapshot] = []
        for state in lineage {
            let infos = state.model.weightLayers
            guard number <= infos.count, let weight = try? state.model.weightTensor(layer: number) else { continue }
            let snapshot = Snapshot(values: weight.data, precision: infos[number - 1].precision, step: state.steps.last)
            if let last = snapshots.last, last.values == snapshot.values, last.precision == snapshot.precision { continue }
            snapshots.append(snapshot)
        }
        guard let latest = snapshots.last else { throw CommandError("layer \(number) has no weights") }
        var chosen: [Snapshot]
        if let firstQuantized = snapshots.firstIndex(where: { $0.precision.isQuantized }) {
            chosen = (firstQuantized > 0 ? [snapshots[firstQuantized - 1]] : []) + [snapshots[firstQuantized]]
            if snapshots.count - 1 > firstQuantized { chosen.append(latest) }
        } else {
            chosen = [snapshots[0]] + (snapshots.count > 1 ? [latest] : [])
        }
        return chosen.map { snapshot in
            let origin = snapshot.step.map { "after '\($0)'" } ?? "as loaded"
            return WeightHistogramFigure.Series(label: "\(snapshot.precision.label) \(origin)", values: snapshot.values)
        }
    }

    static let plotAnalysis = CommandSpec(
        ["plot", "analysis"], group: .analysis, summary: "SVG bars of the per-layer error from the last 'analyze'",
        positionals: [Positional("file", keyword: "to", .path, help: "the .svg file to write")],
        options: [OptionParameter("metric", .choice(LayerErrorFigure.Metric.self), default: .choice(LayerErrorFigure.Metric.sqnr),
                                  help: "sqnr (dB, higher is better) or rmse")],
        examples: ["plot analysis to \"sqnr.svg\"", "plot analysis to \"rmse.svg\" metric=rmse"]
    ) { invocation, session in
        guard let report = session.quantization.lastAnalysis.map(LayerErrorReport.init), !report.rows.isEmpty else {
            throw CommandError("no analysis to plot", hint: "run 'analyze' first")
        }
        let path = try invocation.string("file")
        let metric = try invocation.choice("metric", as: LayerErrorFigure.Metric.self)
        try LayerErrorFigure(report: report, metric: metric).render().write(to: path)
        session.output.line("wrote \(path): \(metric.rawValue) of \(report.rows.count) layers")
    }

    /// Which accuracy `plot results` draws.
    enum AccuracyMetric: String, CaseIterable {
        case top1, top5
    }

    static let plotResults = CommandSpec(
        ["plot", "results"], group: .analysis, summary: "SVG of accuracy against a swept value, from 'results'",
        help: "The x axis is the variable that changed between evals (a 'for' loop's variable, or a 'let' set again), or the one named by x=; without one, the eval's number. Evals made without that variable (such as the float baseline) are drawn as dashed lines; other variables that changed split the points into several lines.",
        positionals: [Positional("file", keyword: "to", .path, help: "the .svg file to write")],
        options: [
            OptionParameter("x", .text, help: "the variable on the x axis (default: the one that changed)"),
            OptionParameter("metric", .choice(AccuracyMetric.self), default: .choice(AccuracyMetric.top1), help: "the accuracy to plot"),
        ],
        examples: ["plot results to \"sweep.svg\"", "plot results to \"sweep.svg\" x=lam"]
    ) { invocation, session in
        let path = try invocation.string("file")
        let figure = try ResultsFigure(session.evaluations, x: invocation.optionalString("x"),
                                       topFive: try invocation.choice("metric", as: AccuracyMetric.self) == .top5)
        try figure.render().write(to: path)
        session.output.line("wrote \(path): \(session.evaluations.count) evals against \(figure.xLabel)")
    }

    static let report = CommandSpec(
        ["report"], group: .analysis, summary: "Write the session's evals and provenance as JSON",
        help: "Every eval with its model state and variables, the qsh version and git commit, the recipes with their SHA-256, model and data checksums, seeds, threads, --set overrides and timings. Two runs of the same recipe give the same file apart from the 'timings' object.",
        positionals: [Positional("file", keyword: "to", .path, help: "the .json file to write")],
        examples: ["report to \"run.json\""]
    ) { invocation, session in
        let path = try invocation.string("file")
        let report = RunReport(session: session)
        try report.write(to: path)
        session.output.line("wrote \(path): \(report.evaluations.count) evals")
    }
}
