import Foundation
import Interpreter
import QuantOps
import XCTest

final class ReportTests: XCTestCase {
    static let recipe = """
        let lam = 0.4
        load resnet20
        for stride in 100, 50 { eval cifar10 stride=$stride }
        """

    /// Runs the recipe in a fresh session with shared models and data, and returns its report as JSON.
    private func runReport(overrides: [String] = []) throws -> (report: RunReport, json: [String: Any]) {
        let output = CapturedOutput()
        let session = Session(output: output, errors: output)
        DocTestDocumentsTests.useSharedResources(session)
        try RecipeRunner(session: session).applyOverrides(overrides)
        XCTAssertEqual(RecipeRunner(session: session).run(text: Self.recipe, fileName: "sweep.qs"), .success, output.text)
        let report = RunReport(session: session)
        let object = try JSONSerialization.jsonObject(with: try report.encoded())
        return (report, try XCTUnwrap(object as? [String: Any]))
    }

    func testReportRecordsProvenanceAndEveryEval() throws {
        let (report, json) = try runReport(overrides: ["lam=0.6"])
        XCTAssertEqual(report.tool.version, QshVersion.string)
        XCTAssertEqual(report.recipes.map(\.name), ["sweep.qs"])
        XCTAssertEqual(report.recipes[0].sha256, Checksum.sha256(Data(Self.recipe.utf8)))
        XCTAssertEqual(report.overrides, ["lam": "0.6"])
        XCTAssertEqual(report.evaluations.map(\.images), [100, 200])
        XCTAssertEqual(report.evaluations.map { $0.variables["stride"] }, ["100", "50"])
        XCTAssertEqual(report.evaluations[0].variables["lam"], "0.6", "the --set value wins over the recipe's let")
        XCTAssertEqual(report.evaluations[0].state, "resnet20")
        XCTAssertEqual(report.models.map(\.name), ["resnet20"])
        XCTAssertEqual(report.models.first?.sha256.count, 64)
        XCTAssertEqual(report.evaluations[0].modelSHA256, report.models.first?.sha256)
        XCTAssertEqual(report.data.map(\.name), ["cifar-10-batches-bin/test_batch.bin"])
        XCTAssertEqual(report.timings.evaluationSeconds.count, 2)
        XCTAssertEqual(report.statements.count, 3)
        XCTAssertTrue(report.tool.gitCommit == "unknown" || report.tool.gitCommit.count == 40, report.tool.gitCommit)
        // Keys are the documented ones, and timings are all in one place.
        XCTAssertEqual(Set(json.keys), ["data", "evaluations", "format", "models", "overrides", "recipes", "results", "seeds", "sweep",
                                        "statements", "threads", "timings", "tool"])
        let evaluation = try XCTUnwrap((json["evaluations"] as? [[String: Any]])?.first)
        XCTAssertNil(evaluation["seconds"])
    }

    func testTwoRunsDifferOnlyInTimings() throws {
        var first = try runReport().json
        var second = try runReport().json
        XCTAssertNotNil(first.removeValue(forKey: "timings"))
        XCTAssertNotNil(second.removeValue(forKey: "timings"))
        let encode = { (object: [String: Any]) in try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) }
        XCTAssertEqual(try encode(first), try encode(second))
    }

    func testReportCommandWritesSortedJSONAtomically() throws {
        let output = CapturedOutput()
        let session = Session(output: output, errors: output)
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("qsh-report-\(UUID().uuidString).json").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        XCTAssertEqual(RecipeRunner(session: session).run(text: "let x = 1\nreport to \"\(path)\"", fileName: "r.qs"), .success,
                       output.text)
        XCTAssertEqual(output.text, "wrote \(path): 0 evals\n")
        let text = try String(contentsOfFile: path, encoding: .utf8)
        XCTAssertTrue(text.hasPrefix("{\n  \"data\" : ["), text)
        XCTAssertTrue(text.contains("\"text\" : \"let x = 1\\nreport to"), text)
        output.clear()
        XCTAssertEqual(RecipeRunner(session: session).run(text: "report to \"/nonexistent/dir/r.json\"", fileName: "r.qs"), .recipeFailed)
        XCTAssertTrue(output.text.contains("cannot write the report '/nonexistent/dir/r.json'"), output.text)
    }
}
