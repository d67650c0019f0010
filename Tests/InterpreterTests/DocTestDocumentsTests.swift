import Foundation
import Interpreter
import QLang
import XCTest

/// The README, the documents under docs/ and the example recipes are tests: a stale example fails here.
final class DocTestDocumentsTests: XCTestCase {
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    /// Models and data from the environment, else the shared folder beside the package.
    static func useSharedResources(_ session: Session) {
        let shared = packageRoot.deletingLastPathComponent().appendingPathComponent("shared")
        let environment = ProcessInfo.processInfo.environment
        if environment["QSH_MODELS"] == nil { session.settings.modelsDirectory = shared.appendingPathComponent("models").path }
        if environment["QSH_DATA"] == nil { session.settings.dataDirectory = shared.appendingPathComponent("data").path }
    }

    /// Full evaluations take minutes in a debug build: there the documents are only checked.
    static var runsEverything: Bool {
        #if DEBUG
        return ProcessInfo.processInfo.environment["QSH_DOCTESTS"] == "run"
        #else
        return true
        #endif
    }

    static func documents() throws -> [String] {
        let docs = packageRoot.appendingPathComponent("docs")
        let names = try FileManager.default.contentsOfDirectory(atPath: docs.path).filter { $0.hasSuffix(".md") }.sorted()
        let candidates = [packageRoot.appendingPathComponent("README.md").path] + names.map { docs.appendingPathComponent($0).path }
        return try candidates.filter { path in
            MarkdownBlocks.extract(from: try String(contentsOfFile: path, encoding: .utf8)).contains { $0.language == "qsh" }
        }
    }

    private func assertPasses(_ paths: [String], checkOnly: Bool, file: StaticString = #filePath, line: UInt = #line) {
        let runner = DocTestRunner(checkOnly: checkOnly, setup: Self.useSharedResources)
        for path in paths {
            let result = runner.run(path: path)
            XCTAssertTrue(result.succeeded, result.failures.map(\.description).joined(separator: "\n\n"), file: file, line: line)
        }
    }

    /// A recipe in an untagged block would be neither run nor checked: every block names its language.
    func testEveryBlockOfTheDocumentsNamesItsLanguage() throws {
        let docs = Self.packageRoot.appendingPathComponent("docs")
        let names = try FileManager.default.contentsOfDirectory(atPath: docs.path).filter { $0.hasSuffix(".md") }.sorted()
        let paths = [Self.packageRoot.appendingPathComponent("README.md").path] + names.map { docs.appendingPathComponent($0).path }
        for path in paths {
            let blocks = MarkdownBlocks.extract(from: try String(contentsOfFile: path, encoding: .utf8))
            for block in blocks where block.language.isEmpty {
                XCTFail("\(path):\(block.fenceLine): a fenced block without a language; tag it qsh (or 'qsh no-run'), output, sh, text, ...")
            }
        }
    }

    /// `qsh examples/tour.qs` runs what the README's tour shows.
    func testTheReadmeTourIsExamplesTour() throws {
        let readme = try String(contentsOf: Self.packageRoot.appendingPathComponent("README.md"), encoding: .utf8)
        let tour = try XCTUnwrap(MarkdownBlocks.extract(from: readme).first { $0.language == "qsh" })
        let file = try String(contentsOf: Self.packageRoot.appendingPathComponent("examples/tour.qs"), encoding: .utf8)
        XCTAssertEqual(try Parser.parse(SourceFile(name: "README.md", text: tour.text)),
                       try Parser.parse(SourceFile(name: "examples/tour.qs", text: file)),
                       "the README's first qsh block and examples/tour.qs differ")
    }

    func testTheDocTestGuideRunsInFull() {
        // It needs no model, so it runs in any build and shows that the conventions it describes hold.
        let guide = Self.packageRoot.appendingPathComponent("docs/doctests.md").path
        let result = DocTestRunner().run(path: guide)
        XCTAssertTrue(result.succeeded, result.failures.map(\.description).joined(separator: "\n\n"))
        XCTAssertGreaterThanOrEqual(result.passed, 5)
    }

    func testReadmeAndDocumentsHoldTrue() throws {
        let documents = try Self.documents()
        XCTAssertTrue(documents.contains { $0.hasSuffix("README.md") }, "the README shows qsh blocks")
        assertPasses(documents, checkOnly: !Self.runsEverything)
    }

    /// Examples evaluate on the full test set and some calibrate or distill for minutes, so they are
    /// checked here and run in full by `qsh test examples/*.qs`, or here with QSH_DOCTESTS=run.
    func testExampleRecipesHoldTrue() throws {
        let examples = Self.packageRoot.appendingPathComponent("examples")
        let recipes = try FileManager.default.contentsOfDirectory(atPath: examples.path).filter { $0.hasSuffix(".qs") }.sorted()
        XCTAssertFalse(recipes.isEmpty)
        let runsExamples = ProcessInfo.processInfo.environment["QSH_DOCTESTS"] == "run"
        assertPasses(recipes.map { examples.appendingPathComponent($0).path }, checkOnly: !runsExamples)
    }
}
