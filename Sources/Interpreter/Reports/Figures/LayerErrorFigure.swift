/// Bars of one error measure per layer, from a `LayerErrorReport`.
public struct LayerErrorFigure: Sendable {
    public enum Metric: String, Sendable, CaseIterable {
        case sqnr, rmse

        var axisLabel: String { self == .sqnr ? "SQNR (dB)" : "RMSE" }
        var legendLabel: String { self == .sqnr ? "SQNR in dB (higher is better)" : "RMSE (lower is better)" }
    }

    public var report: LayerErrorReport
    public var metric: Metric
    public var title: String

    public init(report: LayerErrorReport, metric: Metric, title: String? = nil) {
        self.report = report
        self.metric = metric
        self.title = title ?? "Quantization error per layer: \(metric.axisLabel)"
    }

    public func render() -> SVGCanvas {
        let values = report.rows.map { metric == .sqnr ? $0.sqnrDB : $0.rmse }
        let finite = values.filter(\.isFinite)
        let left = 84.0, right = 28.0
        let width = max(640, left + right + Double(values.count) * 34)
        let frame = PlotFrame(left: left, top: 84, width: width - left - right, height: 300)
        var canvas = SVGCanvas(width: width, height: frame.bottom + 120)
        canvas.text(title, x: width / 2, y: 28, size: 16, anchor: .middle, bold: true)
        Legend(entries: [(metric.legendLabel, ChartPalette.color(0), .box)], maxWidth: frame.width).draw(x: left, y: 58, on: &canvas)

        let yTicks = AxisTicks(covering: min(0, finite.min() ?? 0), max(0, finite.max() ?? 1), count: 6)
        let y = LinearScale(domain: yTicks.domain, start: frame.bottom, end: frame.top)
        frame.drawYAxis(yTicks, scale: y, label: metric.axisLabel, on: &canvas)
        let slot = frame.width / Double(max(1, values.count))
        var ticks: [(position: Double, label: String)] = []
        for (index, value) in values.enumerated() {
            let center = frame.left + slot * (Double(index) + 0.5)
            ticks.append((center, truncated(report.rows[index].layer, to: 14)))
            guard value.isFinite else {
                // An exact layer has no error: infinite SQNR or zero RMSE has no bar height to draw.
                canvas.text("∞", x: center, y: frame.top + 12, size: 12, anchor: .middle)
                continue
            }
            let zero = y.position(0), top = y.position(value)
            canvas.rect(x: center - slot * 0.35, y: min(zero, top), width: slot * 0.7, height: abs(zero - top),
                        fill: ChartPalette.color(0))
        }
        frame.drawXAxis(ticks, label: "layer", rotateLabels: true, on: &canvas)
        return canvas
    }
}
