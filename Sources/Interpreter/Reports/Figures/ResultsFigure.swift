/// Accuracy against a swept value: one line per series, dashed reference lines for evals outside
/// the sweep (such as the float baseline).
public struct ResultsFigure: Sendable {
    public struct Series: Sendable {
        public var name: String
        public var points: [(x: Double, y: Double)]

        public init(name: String, points: [(x: Double, y: Double)]) {
            self.name = name
            self.points = points
        }
    }

    public struct Reference: Sendable {
        public var label: String
        public var value: Double

        public init(label: String, value: Double) {
            self.label = label
            self.value = value
        }
    }

    public var title: String
    public var xLabel: String
    public var yLabel: String
    public var series: [Series]
    public var references: [Reference]
    /// Names for x = 0, 1, 2, ... when the swept values are not numbers.
    public var categories: [String]?

    public init(title: String, xLabel: String, yLabel: String = "top-1 accuracy (%)", series: [Series],
                references: [Reference] = [], categories: [String]? = nil) {
        self.title = title
        self.xLabel = xLabel
        self.yLabel = yLabel
        self.series = series
        self.references = references
        self.categories = categories
    }

    public func render() -> SVGCanvas {
        let width = 760.0, left = 84.0, right = 28.0
        var entries: [Legend.Entry] = series.enumerated().map { (truncated($1.name, to: 50), ChartPalette.color($0), .line) }
        entries += references.enumerated().map { (truncated($1.label, to: 50), ChartPalette.color(series.count + $0), .dashed) }
        let legend = Legend(entries: entries, maxWidth: width - left - right)
        let frame = PlotFrame(left: left, top: 58 + legend.height + 10, width: width - left - right, height: 320)
        var canvas = SVGCanvas(width: width, height: frame.bottom + 60)
        canvas.text(title, x: width / 2, y: 28, size: 16, anchor: .middle, bold: true)
        legend.draw(x: left, y: 58, on: &canvas)

        let xs = series.flatMap { $0.points.map(\.x) }
        let ys = series.flatMap { $0.points.map(\.y) } + references.map(\.value)
        // A little room above and below so that no point sits on the frame.
        let yMargin = ((ys.max() ?? 100) - (ys.min() ?? 0)) * 0.05
        let yTicks = AxisTicks(covering: (ys.min() ?? 0) - yMargin, (ys.max() ?? 100) + yMargin, count: 6)
        let y = LinearScale(domain: yTicks.domain, start: frame.bottom, end: frame.top)
        frame.drawYAxis(yTicks, scale: y, label: yLabel, on: &canvas)

        let x: LinearScale
        if let categories {
            // Categories sit in the middle of equal slots.
            x = LinearScale(domain: -0.5...(Double(max(1, categories.count)) - 0.5), start: frame.left, end: frame.right)
            frame.drawXAxis(categories.enumerated().map { (x.position(Double($0)), truncated($1, to: 12)) },
                            label: xLabel, on: &canvas)
        } else {
            let xTicks = AxisTicks(covering: xs.min() ?? 0, xs.max() ?? 1, count: 8,
                                   integers: xs.allSatisfy { $0 == $0.rounded() })
            // Keep points off the frame's edges.
            let pad = xTicks.step / 4
            x = LinearScale(domain: (xTicks.domain.lowerBound - pad)...(xTicks.domain.upperBound + pad),
                            start: frame.left, end: frame.right)
            frame.drawXAxis(xTicks, scale: x, label: xLabel, on: &canvas)
        }
        for (index, reference) in references.enumerated() {
            let position = y.position(reference.value)
            canvas.line(x1: frame.left, y1: position, x2: frame.right, y2: position,
                        stroke: ChartPalette.color(series.count + index), width: 1.5, dashed: true)
        }
        for (index, entry) in series.enumerated() {
            let color = ChartPalette.color(index)
            let points = entry.points.map { (x: x.position($0.x), y: y.position($0.y)) }
            canvas.polyline(points, stroke: color)
            for point in points { canvas.circle(x: point.x, y: point.y, radius: 4, fill: color) }
        }
        return canvas
    }
}

extension ResultsFigure {
    /// Builds the results figure: picks the x variable, splits series by data set and other varying variables.
    public init(_ records: [EvaluationRecord], x requested: String? = nil, topFive: Bool = false) throws {
        guard !records.isEmpty else { throw CommandError("no evaluations to plot", hint: "run 'eval cifar10' first") }
        let accuracyLabel = topFive ? "top-5" : "top-1"
        func accuracy(_ record: EvaluationRecord) -> Double { topFive ? record.top5 : record.top1 }
        let names = Set(records.flatMap(\.variables.keys))
        let varying = names.filter { name in Set(records.compactMap { $0.variables[name] }.map(\.description)).count > 1 }.sorted()
        let xName: String?
        if let requested {
            guard names.contains(requested) else {
                throw CommandError("no eval was made with a variable named '\(requested)'",
                                   hint: varying.isEmpty ? "without x=, evals are plotted by number" : "variables that changed: " + varying.joined(separator: ", "))
            }
            xName = requested
        } else {
            xName = varying.first
        }
        let title = "\(accuracyLabel) accuracy" + (xName.map { " against $\($0)" } ?? " of each eval")
        let yLabel = "\(accuracyLabel) accuracy (%)"
        guard let xName else {
            let byData = Dictionary(grouping: records.indices, by: { records[$0].dataset })
            let series = byData.keys.sorted().map { data in
                ResultsFigure.Series(name: "\(accuracyLabel) on \(data)",
                                     points: byData[data, default: []].map { (Double($0 + 1), accuracy(records[$0])) })
            }
            self.init(title: title, xLabel: "eval number (see 'results')", yLabel: yLabel, series: series)
            return
        }
        let swept = records.indices.filter { records[$0].variables[xName] != nil }
        let outside = records.indices.filter { records[$0].variables[xName] == nil }
        let values = swept.compactMap { records[$0].variables[xName] }
        let numeric = values.allSatisfy { $0.numericValue != nil }
        var categories: [String] = []
        if !numeric {
            for value in values where !categories.contains(value.description) { categories.append(value.description) }
        }
        func position(_ value: RuntimeValue) -> Double {
            value.numericValue.flatMap { numeric ? $0 : nil } ?? Double(categories.firstIndex(of: value.description) ?? 0)
        }
        let others = varying.filter { $0 != xName }
        var order: [String] = []
        var points: [String: [(x: Double, y: Double)]] = [:]
        for index in swept {
            let record = records[index]
            guard let value = record.variables[xName] else { continue }
            let context = others.compactMap { name in record.variables[name].map { "$\(name)=\($0)" } }
            let key = ([accuracyLabel + " on " + record.dataset] + context).joined(separator: ", ")
            if points[key] == nil { order.append(key) }
            points[key, default: []].append((position(value), accuracy(record)))
        }
        let series = order.map { key in
            ResultsFigure.Series(name: key, points: (points[key] ?? []).sorted { $0.x < $1.x })
        }
        let references = outside.prefix(4).map { index in
            ResultsFigure.Reference(label: "eval \(index + 1): \(records[index].state)", value: accuracy(records[index]))
        }
        self.init(title: title, xLabel: "$" + xName, yLabel: yLabel, series: series, references: Array(references),
                  categories: numeric ? nil : categories)
    }
}
