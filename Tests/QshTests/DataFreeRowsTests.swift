import Foundation
import XCTest

/// The best data-free rows the documents claim (docs/reproduction.md: MP2/6 nm-resnet56;
/// docs/ait.md: W4A4 resnet20), read from their tables: each row's mean and spread follow from
/// its per-seed top-1 values, its recipe passes `qsh check` with each seed's `--set` values, and
/// the recipe's closing expectation holds the mean.
///
/// A row reads `| best: LABEL | [RECIPE](../RECIPE) | SETS | V1, V2, V3 | MEAN ± STD | CPU |`,
/// where SETS lists, per seed, the recipe's `--set` values separated by spaces and the seeds by
/// commas (`-` for the recipe as written).
final class DataFreeRowsTests: XCTestCase {
    struct Row {
        var label: String
        var recipe: String
        var settings: [[String]]
        var values: [Double]
        var mean: Double
        var standardDeviation: Double
    }

    static func rows(in document: String) throws -> [Row] {
        try document.split(separator: "\n").filter { $0.hasPrefix("| best: ") }.map { line in
            let cells = line.split(separator: "|", omittingEmptySubsequences: false).dropFirst().dropLast()
                .map { $0.trimmingCharacters(in: .whitespaces) }
            guard cells.count >= 5 else { throw RowProblem("too few cells: \(line)") }
            guard let open = cells[1].firstIndex(of: "["), let close = cells[1].firstIndex(of: "]") else {
                throw RowProblem("no recipe link: \(cells[1])")
            }
            let settings = cells[2].split(separator: ",").map { seed in
                seed.split(separator: " ").map(String.init).filter { $0 != "-" }
            }
            let values = try cells[3].split(separator: ",").map { text -> Double in
                guard let value = Double(text.trimmingCharacters(in: .whitespaces)) else { throw RowProblem("not a number: \(text)") }
                return value
            }
            let summary = cells[4].replacingOccurrences(of: "*", with: "").components(separatedBy: "±")
                .map { $0.trimmingCharacters(in: .whitespaces) }
            guard summary.count == 2, let mean = Double(summary[0]), let deviation = Double(summary[1]) else {
                throw RowProblem("no mean ± std: \(cells[4])")
            }
            return Row(label: String(cells[0].dropFirst("best: ".count)),
                       recipe: String(cells[1][cells[1].index(after: open) ..< close]),
                       settings: settings, values: values, mean: mean, standardDeviation: deviation)
        }
    }

    struct RowProblem: Error, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }

    /// The target of the recipe's last `expect top1 == C +- T`.
    static func closingExpectation(_ recipe: String) -> (centre: Double, tolerance: Double)? {
        guard let line = recipe.split(separator: "\n").last(where: { $0.hasPrefix("expect top1 == ") }) else { return nil }
        let words = line.split(separator: " ")
        guard words.count >= 6, words[4] == "+-", let centre = Double(words[3]), let tolerance = Double(words[5]) else { return nil }
        return (centre, tolerance)
    }

    func testBestDataFreeRowsFollowFromTheirSeedsAndRecipes() throws {
        let expected = ["docs/reproduction.md": "MP2/6", "docs/ait.md": "W4A4"]
        for (document, setting) in expected {
            let text = try String(contentsOf: QshProcess.packageRoot.appendingPathComponent(document), encoding: .utf8)
            let rows = try Self.rows(in: text)
            XCTAssertTrue(rows.contains { $0.label.contains(setting) }, "\(document) has no best \(setting) row")
            for row in rows {
                let context = "\(document), \(row.label)"
                XCTAssertGreaterThanOrEqual(row.values.count, 3, "\(context): a claim is a mean over 3 seeds")
                XCTAssertEqual(row.settings.count, row.values.count, "\(context): one seed setting per value")
                XCTAssertEqual(Set(row.settings).count, row.settings.count, "\(context): the seeds differ")
                let mean = row.values.reduce(0, +) / Double(row.values.count)
                let variance = row.values.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(row.values.count - 1)
                XCTAssertEqual(row.mean, mean, accuracy: 0.0051, context)
                XCTAssertEqual(row.standardDeviation, variance.squareRoot(), accuracy: 0.0051, "\(context): sample standard deviation")

                let recipePath = QshProcess.packageRoot.appendingPathComponent(row.recipe)
                let recipe = try String(contentsOf: recipePath, encoding: .utf8)
                let expectation = try XCTUnwrap(Self.closingExpectation(recipe), "\(row.recipe) closes with no expect top1 == C +- T")
                XCTAssertLessThanOrEqual(abs(expectation.centre - row.mean), expectation.tolerance, "\(context): \(row.recipe)'s expectation")
                for settings in row.settings {
                    let check = try QshProcess.run(["check"] + settings.flatMap { ["--set", $0] } + [row.recipe])
                    XCTAssertEqual(check.status, 0, "\(context): qsh check \(settings) \(row.recipe): \(check.errors)")
                }
            }
        }
    }

    func testRowsAreReadCellByCell() throws {
        let rows = try Self.rows(in: """
            | row | recipe | seeds | top-1 | mean ± std | CPU min |
            | best: MP2/6 x | [examples/a.qs](../examples/a.qs) | -, seed=3 heldout_seed=4 | 89.00, 88.70 | **88.85 ± 0.21** | 7 |
            """)
        XCTAssertEqual(rows.count, 1)
        XCTAssertEqual(rows[0].label, "MP2/6 x")
        XCTAssertEqual(rows[0].recipe, "examples/a.qs")
        XCTAssertEqual(rows[0].settings, [[], ["seed=3", "heldout_seed=4"]])
        XCTAssertEqual(rows[0].values, [89.00, 88.70])
        XCTAssertEqual(rows[0].mean, 88.85)
        XCTAssertEqual(rows[0].standardDeviation, 0.21)
        XCTAssertEqual(Self.closingExpectation("expect top1 == 1 +- 2\nexpect top1 == 89.2 +- 1.5   # note")?.centre, 89.2)
        XCTAssertThrowsError(try Self.rows(in: "| best: x | no link | - | 1 | 1 ± 0 | 1 |"))
    }
}
