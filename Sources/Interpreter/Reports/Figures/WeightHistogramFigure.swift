import Foundation

/// Weight histograms of one layer in several states (float, quantized, compensated), one panel per
/// state on a shared x axis, as in the DF-MPC paper's Fig. 4. Panels have their own y scale: a
/// ternary layer's three spikes would otherwise flatten the float distribution.
public struct WeightHistogramFigure: Sendable {
    public struct Series: Sendable {
        public var label: String
        public var values: [Float]

        public init(label: String, values: [Float]) {
            self.label = label
            self.values = values
        }
    }

    public var title: String
    public var series: [Series]
    public var bins: Int

    public init(title: String, series: [Series], bins: Int = 60) {
        self.title = title
        self.series = series
        self.bins = max(2, bins)
    }

    /// Share of the weights (in %) per bin, over a common range.
    public func histogram(_ values: [Float], range: ClosedRange<Double>) -> [Double] {
        var counts = Array(repeating: 0, count: bins)
        let width = (range.upperBound - range.lowerBound) / Double(bins)
        for value in values where value.isFinite {
            let index = width > 0 ? Int((Double(value) - range.lowerBound) / width) : bins / 2
            counts[min(bins - 1, max(0, index))] += 1
        }
        let total = Double(max(1, values.count))
        return counts.map { Double($0) / total * 100 }
    }

    public func render() -> SVGCanvas {
        let panelHeight = 150.0, panelGap = 62.0, left = 84.0, right = 28.0, width = 760.0
        let legend = Legend(entries: series.enumerated().map { (truncated($1.label, to: 60), ChartPalette.color($0), .box) },
                            maxWidth: width - left - right)
        let legendBaseline = 66.0
        let firstPanelTop = legendBaseline + legend.height + 22
        let height = firstPanelTop + Double(series.count) * (panelHeight + panelGap) + 8
        var canvas = SVGCanvas(width: width, height: height)
        canvas.text(title, x: width / 2, y: 28, size: 16, anchor: .middle, bold: true)
        canvas.text("weight histograms, one panel per model state, on a shared value axis",
                    x: width / 2, y: 46, size: 11, anchor: .middle, color: "#666666")
        legend.draw(x: left, y: legendBaseline, on: &canvas)

        let finite = series.flatMap(\.values).filter(\.isFinite)
        let low = Double(finite.min() ?? -1), high = Double(finite.max() ?? 1)
        let xTicks = AxisTicks(covering: low, high, count: 8)
        let range = xTicks.domain
        for (index, entry) in series.enumerated() {
            let frame = PlotFrame(left: left, top: firstPanelTop + Double(index) * (panelHeight + panelGap),
                                  width: width - left - right, height: panelHeight)
            let shares = histogram(entry.values, range: range)
            let yTicks = AxisTicks(covering: 0, max(shares.max() ?? 1, 1e-9), count: 4)
            let x = LinearScale(domain: range, start: frame.left, end: frame.right)
            let y = LinearScale(domain: yTicks.domain, start: frame.bottom, end: frame.top)
            frame.drawYAxis(yTicks, scale: y, label: "% of weights", on: &canvas)
            let binWidth = (range.upperBound - range.lowerBound) / Double(bins)
            for (bin, share) in shares.enumerated() where share > 0 {
                let x0 = x.position(range.lowerBound + Double(bin) * binWidth)
                let x1 = x.position(range.lowerBound + Double(bin + 1) * binWidth)
                canvas.rect(x: x0 + 0.5, y: y.position(share), width: x1 - x0 - 1, height: frame.bottom - y.position(share),
                            fill: ChartPalette.color(index))
            }
            frame.drawXAxis(xTicks, scale: x, label: index == series.count - 1 ? "weight value" : nil, on: &canvas)
            let distinct = Set(entry.values).count
            canvas.text(truncated(entry.label, to: 80) + "  (\(entry.values.count) weights, \(distinct) distinct values)",
                        x: frame.left + 6, y: frame.top - 6, size: 11, bold: true, color: ChartPalette.color(index))
        }
        return canvas
    }
}
