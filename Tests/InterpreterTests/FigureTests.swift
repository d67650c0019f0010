import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import Interpreter
import QuantOps
import XCTest

final class FigureTests: XCTestCase {
    static let outputDirectory: URL = {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("qsh-figures")
        try? FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        return directory
    }()

    /// Renders an SVG to PNG with rsvg-convert when it is installed: a malformed SVG fails here.
    static func rasterize(_ svg: URL, file: StaticString = #filePath, line: UInt = #line) throws -> URL? {
        let candidates = ["/usr/bin/rsvg-convert", "/usr/local/bin/rsvg-convert"]
        guard let tool = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else { return nil }
        let png = svg.deletingPathExtension().appendingPathExtension("png")
        try? FileManager.default.removeItem(at: png)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: tool)
        process.arguments = ["--format=png", "--output=\(png.path)", svg.path]
        let errors = Pipe()
        process.standardError = errors
        try process.run()
        let message = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0, "rsvg-convert: \(message)", file: file, line: line)
        let size = (try? FileManager.default.attributesOfItem(atPath: png.path)[.size] as? Int) ?? 0
        XCTAssertGreaterThan(size ?? 0, 1000, "the PNG is empty", file: file, line: line)
        return png
    }

    private func write(_ canvas: SVGCanvas, _ name: String) throws -> (url: URL, text: String) {
        let url = Self.outputDirectory.appendingPathComponent(name)
        try canvas.write(to: url.path)
        let text = try String(contentsOf: url, encoding: .utf8)
        return (url, text)
    }

    func testTicksFallOnRoundNumbersAndCoverTheData() {
        let ticks = AxisTicks(covering: -0.137, 0.92, count: 5).values
        XCTAssertEqual(ticks.first, -0.2)
        XCTAssertEqual(ticks.last ?? 0, 1.0, accuracy: 1e-12)
        XCTAssertEqual(ticks.count, 7)
        XCTAssertEqual(AxisTicks(covering: 5, 5, count: 5).values.count > 1, true, "a single value still gets an axis")
        XCTAssertEqual(AxisTicks(covering: 3, 6, count: 8, integers: true).values, [3, 4, 5, 6], "bit widths have no halves")
        XCTAssertEqual(AxisTicks(covering: 0, 0.6, count: 6).values.map { AxisTicks(covering: 0, 0.6, count: 6).label($0) },
                       ["0.0", "0.1", "0.2", "0.3", "0.4", "0.5", "0.6"])
    }

    func testHistogramFigureHasTitleAxesLegendAndPanels() throws {
        var generator = SystemRandomNumberGenerator()
        let float = (0..<2000).map { _ in Float.random(in: -1...1, using: &generator) * Float.random(in: 0...0.2, using: &generator) }
        let ternary = float.map { abs($0) < 0.05 ? 0 : ($0 > 0 ? Float(0.09) : -0.09) }
        let figure = WeightHistogramFigure(title: "Layer 3 (layer1.0.conv2): float against quantized weights", series: [
            .init(label: "fp32 after 'fold bn'", values: float),
            .init(label: "ternary after 'ternary layer 3..'", values: ternary),
            .init(label: "ternary after 'compensate dfmpc lambda=0.4'", values: ternary.map { $0 * 1.1 }),
        ])
        let (url, text) = try write(figure.render(), "hist.svg")
        XCTAssertTrue(text.contains("Layer 3 (layer1.0.conv2): float against quantized weights"))
        XCTAssertTrue(text.contains("weight value"))
        XCTAssertTrue(text.contains("% of weights"))
        XCTAssertTrue(text.contains("ternary after &apos;compensate dfmpc lambda=0.4&apos;"), "labels are escaped")
        XCTAssertTrue(text.contains("(2000 weights, 3 distinct values)"))
        XCTAssertEqual(try XMLDocument(xmlString: text).rootElement()?.name, "svg")
        _ = try Self.rasterize(url)
    }

    func testHistogramSharesSumToAHundredPercent() {
        let figure = WeightHistogramFigure(title: "t", series: [], bins: 10)
        let shares = figure.histogram([-1, -0.5, 0, 0, 0.5, 1], range: -1...1)
        XCTAssertEqual(shares.reduce(0, +), 100, accuracy: 1e-9)
        XCTAssertEqual(shares[0], 100.0 / 6, accuracy: 1e-9)
        XCTAssertEqual(shares[9], 100.0 / 6, accuracy: 1e-9, "the upper end falls into the last bin")
        XCTAssertEqual(shares[5], 200.0 / 6, accuracy: 1e-9)
    }

    func testAnalysisFigureDrawsOneBarPerLayer() throws {
        let rows = (1...19).map { (layer: "layer\($0).conv", rmse: 0.01 * Double($0), sqnrDB: 30 - Double($0)) }
        let figure = LayerErrorFigure(report: LayerErrorReport(rows: rows + [(layer: "fc", rmse: 0, sqnrDB: .infinity)]), metric: .sqnr)
        let (url, text) = try write(figure.render(), "analysis.svg")
        XCTAssertTrue(text.contains("Quantization error per layer: SQNR (dB)"))
        XCTAssertTrue(text.contains("SQNR in dB (higher is better)"))
        XCTAssertTrue(text.contains(">layer19.conv<"))
        XCTAssertTrue(text.contains(">∞<"), "an exact layer is marked, not drawn as a bar")
        // The background, the legend key and one bar per finite layer.
        XCTAssertEqual(text.components(separatedBy: "<rect").count - 1, 1 + 1 + 19)
        _ = try Self.rasterize(url)
    }

    func testResultsFigureFromASweepRecordedBySession() throws {
        let session = Session(output: CapturedOutput(), errors: CapturedOutput())
        func evaluate(_ top1: Double) {
            session.evaluations.append(EvaluationRecord(state: "resnet20", dataset: "cifar10", images: 500, top1: top1, top5: 99, seconds: 0.5))
        }
        evaluate(91.7)
        for (lam, top1) in [(0.2, 80.1), (0.4, 85.3), (0.6, 83.0)] {
            session.variables["lam"] = .number(lam)
            evaluate(top1)
        }
        XCTAssertEqual(session.evaluations[2].variables["lam"], .number(0.4), "the session stamps the variables on each eval")
        XCTAssertTrue(session.evaluations[0].variables.isEmpty)

        let figure = try ResultsFigure(session.evaluations)
        XCTAssertEqual(figure.xLabel, "$lam")
        XCTAssertEqual(figure.series.count, 1)
        XCTAssertEqual(figure.series[0].points.map(\.x), [0.2, 0.4, 0.6])
        XCTAssertEqual(figure.series[0].points.map(\.y), [80.1, 85.3, 83.0])
        XCTAssertEqual(figure.references.map(\.value), [91.7], "the baseline outside the sweep is a reference line")
        let (url, text) = try write(figure.render(), "results.svg")
        XCTAssertTrue(text.contains("top-1 accuracy against $lam"))
        XCTAssertTrue(text.contains("<polyline"))
        XCTAssertTrue(text.contains("stroke-dasharray"))
        _ = try Self.rasterize(url)
    }

    func testPlotCommandsWriteFilesAndExplainMissingInput() throws {
        let output = CapturedOutput()
        let session = Session(output: output, errors: output)
        let path = Self.outputDirectory.appendingPathComponent("cmd-analysis.svg").path
        XCTAssertEqual(RecipeRunner(session: session).run(text: "plot analysis to \"\(path)\"", fileName: "p.qs"), .recipeFailed)
        XCTAssertTrue(output.text.contains("no analysis to plot"), output.text)
        XCTAssertTrue(output.text.contains("run 'analyze' first"), output.text)
        session.quantization.lastAnalysis = LayerErrorAnalysis(
            rows: [LayerError(layer: 1, name: "conv1", outputNode: "relu1", rmse: 0.1, sqnr: 12, inputSQNR: nil),
                   LayerError(layer: 2, name: "fc", outputNode: "fc", rmse: 0.2, sqnr: 8, inputSQNR: 12)],
            images: 4, worst: 1, mostHarmful: 1)
        output.clear()
        XCTAssertEqual(RecipeRunner(session: session).run(text: "plot analysis to \"\(path)\" metric=rmse", fileName: "p.qs"), .success)
        XCTAssertEqual(output.text, "wrote \(path): rmse of 2 layers\n")
        XCTAssertTrue(try String(contentsOfFile: path, encoding: .utf8).contains("RMSE (lower is better)"))
        output.clear()
        XCTAssertEqual(RecipeRunner(session: session).run(text: "plot results to \"x.svg\"", fileName: "p.qs"), .recipeFailed)
        XCTAssertTrue(output.text.contains("no evaluations to plot"), output.text)
        output.clear()
        XCTAssertEqual(RecipeRunner(session: session).run(text: "plot hist layer 1 to \"x.svg\"", fileName: "p.qs"), .recipeFailed)
        XCTAssertTrue(output.text.contains("'plot hist' needs a model"), output.text)
    }
}
