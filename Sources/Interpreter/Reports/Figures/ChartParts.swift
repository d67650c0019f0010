import Foundation

/// Colours that stay distinct for colour-blind readers and in greyscale print.
enum ChartPalette {
    static let colors = ["#4C78A8", "#F58518", "#54A24B", "#E45756", "#72B7B2", "#B279A2", "#9D755D", "#BAB0AC"]

    static func color(_ index: Int) -> String { colors[index % colors.count] }
}

/// Maps data values on one axis to canvas coordinates.
struct LinearScale {
    var domain: ClosedRange<Double>
    /// Canvas coordinates of the domain's lower and upper ends (the upper may be the smaller one, as for y).
    var start: Double
    var end: Double

    func position(_ value: Double) -> Double {
        let span = domain.upperBound - domain.lowerBound
        guard span > 0 else { return (start + end) / 2 }
        return start + (value - domain.lowerBound) / span * (end - start)
    }
}

/// Tick values on round numbers: 1, 2 or 5 times a power of ten.
public struct AxisTicks: Sendable {
    public var values: [Double]
    public var step: Double
    /// The span from the first to the last tick, which covers the data.
    public var domain: ClosedRange<Double> { (values.first ?? 0)...(values.last ?? 1) }

    /// With `integers`, ticks fall on whole numbers only (bit widths, counts).
    public init(covering low: Double, _ high: Double, count: Int = 5, integers: Bool = false) {
        var low = low, high = high
        if !low.isFinite || !high.isFinite { low = 0; high = 1 }
        if high < low { swap(&low, &high) }
        if high == low {
            let pad = low == 0 ? 1 : abs(low) * 0.1
            low -= pad
            high += pad
        }
        let rough = (high - low) / Double(max(1, count))
        let magnitude = pow(10, floor(log10(rough)))
        // Allowing a step a little under the rough one keeps the tick count near the one asked for.
        let niceStep = [1.0, 2, 5, 10].map { $0 * magnitude }.first { $0 >= rough * 0.75 } ?? 10 * magnitude
        let step = integers ? max(1, niceStep.rounded()) : niceStep
        let first = floor(low / step + 1e-9) * step
        let last = ceil(high / step - 1e-9) * step
        var values: [Double] = []
        var value = first
        while value <= last + step * 1e-6, values.count < 100 {
            values.append(abs(value) < step * 1e-9 ? 0 : value)
            value += step
        }
        self.values = values
        self.step = step
    }

    /// A tick label with as many decimals as the step needs.
    public func label(_ value: Double) -> String {
        let decimals = max(0, Int(-floor(log10(step) + 1e-9)))
        if abs(value) >= 1e5 || (abs(value) < 1e-3 && value != 0) { return String(format: "%.1e", value) }
        return String(format: "%.\(decimals)f", value)
    }
}

/// The rectangle data is drawn in, with its axes, ticks, grid and axis labels.
struct PlotFrame {
    var left: Double
    var top: Double
    var width: Double
    var height: Double
    var bottom: Double { top + height }
    var right: Double { left + width }

    static let axisColor = "#333333"
    static let gridColor = "#e3e3e3"

    /// Draws the frame's y axis with grid lines at each tick, and the x axis line.
    func drawYAxis(_ ticks: AxisTicks, scale: LinearScale, label: String, on canvas: inout SVGCanvas) {
        for value in ticks.values {
            let y = scale.position(value)
            canvas.line(x1: left, y1: y, x2: right, y2: y, stroke: Self.gridColor)
            canvas.line(x1: left - 5, y1: y, x2: left, y2: y, stroke: Self.axisColor)
            canvas.text(ticks.label(value), x: left - 8, y: y + 4, size: 11, anchor: .end)
        }
        canvas.line(x1: left, y1: top, x2: left, y2: bottom, stroke: Self.axisColor)
        canvas.text(label, x: left - 52, y: top + height / 2, size: 12, anchor: .middle, rotation: -90)
    }

    /// Draws the x axis with numeric ticks.
    func drawXAxis(_ ticks: AxisTicks, scale: LinearScale, label: String?, on canvas: inout SVGCanvas) {
        drawXAxis(ticks.values.map { (scale.position($0), ticks.label($0)) }, label: label, on: &canvas)
    }

    /// Draws the x axis with ticks at given positions; long labels are turned to fit.
    func drawXAxis(_ ticks: [(position: Double, label: String)], label: String?, rotateLabels: Bool = false,
                   on canvas: inout SVGCanvas) {
        canvas.line(x1: left, y1: bottom, x2: right, y2: bottom, stroke: Self.axisColor)
        for tick in ticks {
            canvas.line(x1: tick.position, y1: bottom, x2: tick.position, y2: bottom + 5, stroke: Self.axisColor)
            if rotateLabels {
                canvas.text(tick.label, x: tick.position + 3, y: bottom + 12, size: 10, anchor: .end, rotation: -45)
            } else {
                canvas.text(tick.label, x: tick.position, y: bottom + 18, size: 11, anchor: .middle)
            }
        }
        if let label {
            canvas.text(label, x: left + width / 2, y: bottom + (rotateLabels ? 92 : 40), size: 12, anchor: .middle)
        }
    }
}

/// A row of coloured keys naming the series, wrapped onto more rows when long.
struct Legend {
    enum Mark {
        case box, line, dashed
    }

    typealias Entry = (label: String, color: String, mark: Mark)

    var entries: [Entry]
    var maxWidth: Double
    static let rowHeight = 18.0

    /// Where each entry starts, relative to the legend's origin.
    private var offsets: [(x: Double, y: Double)] {
        var result: [(x: Double, y: Double)] = []
        var x = 0.0, y = 0.0
        for entry in entries {
            let width = 22 + Self.estimatedWidth(entry.label, size: 11) + 18
            if x > 0, x + width > maxWidth {
                x = 0
                y += Self.rowHeight
            }
            result.append((x, y))
            x += width
        }
        return result
    }

    var height: Double { (offsets.last?.y ?? 0) + Self.rowHeight }

    /// Draws the legend with its first row's text baseline at `y`.
    func draw(x: Double, y: Double, on canvas: inout SVGCanvas) {
        for (entry, offset) in zip(entries, offsets) {
            let left = x + offset.x, baseline = y + offset.y
            switch entry.mark {
            case .box: canvas.rect(x: left, y: baseline - 9, width: 14, height: 10, fill: entry.color)
            case .line: canvas.line(x1: left, y1: baseline - 4, x2: left + 16, y2: baseline - 4, stroke: entry.color, width: 2.5)
            case .dashed: canvas.line(x1: left, y1: baseline - 4, x2: left + 16, y2: baseline - 4, stroke: entry.color, width: 2, dashed: true)
            }
            canvas.text(entry.label, x: left + 22, y: baseline, size: 11)
        }
    }

    /// Rough text width for layout; no font metrics are available without a renderer.
    static func estimatedWidth(_ text: String, size: Double) -> Double {
        Double(text.count) * size * 0.6
    }
}

/// Shortens labels that would not fit.
func truncated(_ text: String, to length: Int) -> String {
    text.count <= length ? text : String(text.prefix(max(1, length - 1))) + "…"
}
