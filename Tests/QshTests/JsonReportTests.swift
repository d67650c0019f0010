import Foundation
import XCTest

/// `qsh FILE.qs --json FILE` as a user runs it.
final class JsonReportTests: XCTestCase {
    func testJsonReportRecordsOverridesAndRepeatsExactlyApartFromTimings() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("qsh-json-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let recipe = directory.appendingPathComponent("sweep.qs")
        try "let lam = 0.4\nload resnet20\neval cifar10 stride=100\nexpect top1 > 50\n".write(to: recipe, atomically: true, encoding: .utf8)

        func run(_ name: String) throws -> [String: Any] {
            let report = directory.appendingPathComponent(name)
            let result = try QshProcess.run([recipe.path, "--set", "lam=0.5", "--threads", "1", "--json", report.path])
            XCTAssertEqual(result.status, 0, result.errors)
            let object = try JSONSerialization.jsonObject(with: Data(contentsOf: report))
            return try XCTUnwrap(object as? [String: Any])
        }
        var first = try run("a.json")
        var second = try run("b.json")
        XCTAssertEqual(first["overrides"] as? [String: String], ["lam": "0.5"])
        XCTAssertEqual(first["threads"] as? Int, 1)
        XCTAssertEqual(first["exitStatus"] as? Int, 0)
        XCTAssertEqual((first["evaluations"] as? [[String: Any]])?.count, 1)
        XCTAssertNotNil((first["timings"] as? [String: Any])?["totalSeconds"])
        first["timings"] = nil
        second["timings"] = nil
        XCTAssertEqual(try JSONSerialization.data(withJSONObject: first, options: .sortedKeys),
                       try JSONSerialization.data(withJSONObject: second, options: .sortedKeys))
    }

    func testFailedRecipeStillWritesItsReport() throws {
        let report = FileManager.default.temporaryDirectory.appendingPathComponent("qsh-json-\(UUID().uuidString).json")
        defer { try? FileManager.default.removeItem(at: report) }
        let result = try QshProcess.run(["-c", "let x = 2\nexpect $x > 3", "--json", report.path])
        XCTAssertEqual(result.status, 1)
        let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: report)) as? [String: Any])
        XCTAssertEqual(object["exitStatus"] as? Int, 1)
        XCTAssertEqual((object["recipes"] as? [[String: Any]])?.first?["name"] as? String, "<-c>")
    }
}
