import Foundation
import Interpreter
import QuantOps
import XCTest

/// QuantOps is a library: its error text says what is wrong and what state the model needs, and
/// the shell adds which command gets there (`Prerequisite.remedy(for:)`). The other side of the
/// boundary, the interrupt flag, is checked in QuantOpsTests' LibraryBoundaryTests.
final class LibraryErrorTextTests: XCTestCase {
    /// Quoted text in QuantOps code ('fold bn', `calibrate`, ...) that starts with one of the
    /// shell's command words: recipe syntax that only the shell should show.
    func testQuantOpsTextNeverQuotesAShellCommand() throws {
        let sources = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Sources/QuantOps")
        let files = FileManager.default.enumerator(at: sources, includingPropertiesForKeys: nil)?
            .compactMap { $0 as? URL }.filter { $0.pathExtension == "swift" } ?? []
        XCTAssertGreaterThan(files.count, 20, "QuantOps sources not found under \(sources.path)")
        let commandWords = Set(CommandRegistry.standard.commandWords)
        XCTAssertTrue(commandWords.isSuperset(of: ["load", "fold", "calibrate", "quantize", "save"]), "\(commandWords.sorted())")
        let quoted = try NSRegularExpression(pattern: "(['`])([a-z][a-z0-9]*)[^'`\\n]*\\1")
        var offenders: [String] = []
        for file in files {
            let lines = try String(contentsOf: file, encoding: .utf8).components(separatedBy: "\n")
            for (number, line) in lines.enumerated() where !line.trimmingCharacters(in: .whitespaces).hasPrefix("//") {
                let range = NSRange(line.startIndex..., in: line)
                for match in quoted.matches(in: line, range: range) {
                    guard let word = Range(match.range(at: 2), in: line).map({ String(line[$0]) }), commandWords.contains(word),
                          let text = Range(match.range, in: line) else { continue }
                    offenders.append("\(file.lastPathComponent):\(number + 1): \(line[text])")
                }
            }
        }
        XCTAssertEqual(offenders, [], "QuantOps text that names shell commands; throw with `unmet:` and let the shell add the remedy")
    }

    func testEveryPrerequisiteHasARemedyThatNamesACommand() {
        let commandWords = Set(CommandRegistry.standard.commandWords)
        for prerequisite in Prerequisite.allCases {
            let remedy = prerequisite.remedy(for: "eval")
            let named = remedy.split(separator: "'").enumerated().filter { $0.offset % 2 == 1 }.map { $0.element.split(separator: " ")[0] }
            XCTAssertFalse(named.isEmpty, "\(prerequisite): \(remedy)")
            XCTAssertTrue(named.allSatisfy { commandWords.contains(String($0)) }, "\(prerequisite): \(remedy)")
        }
    }

    /// QuantOps names the state it needs; the shell adds which command reaches it.
    func testLibraryErrorsGetTheShellsRemedy() throws {
        let harness = RecipeHarness()
        harness.session.install(ModelState(model: ModelHistoryTests.tinyModel(1), origin: "tiny"))
        XCTAssertEqual(harness.run("quantize weights bits=4\nequalize"), .recipeFailed)
        XCTAssertTrue(harness.errors.text.contains("equalizing would move its weights off the grid; run 'equalize' before 'quantize weights'"),
                      harness.errors.text)
    }
}
