import Foundation
import XCTest

/// `qsh test` as a user runs it: per-file lines, diffs with file:line, and the exit status.
final class DocumentationCommandTests: XCTestCase {
    func testPassingDocumentAndFailingRecipe() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("qsh-doc-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let stale = directory.appendingPathComponent("stale.md")
        try """
            Intro.

            ```qsh
            for b in 2..3 { print "bits=$b" }
            ```

            ```output
            bits=2
            bits=4
            ```
            """.write(to: stale, atomically: true, encoding: .utf8)
        let recipe = directory.appendingPathComponent("check.qs")
        try "let x = 3\nexpect $x >= 3\nexpect $x < 3\n".write(to: recipe, atomically: true, encoding: .utf8)

        let guide = try QshProcess.run(["test", "docs/doctests.md"])
        XCTAssertEqual(guide.status, 0, guide.output + guide.errors)
        XCTAssertTrue(guide.output.contains("docs/doctests.md: ok ("), guide.output)

        let failed = try QshProcess.run(["test", stale.path, recipe.path])
        XCTAssertEqual(failed.status, 1)
        XCTAssertTrue(failed.output.contains("""
            \(stale.path):3: the output differs from the expected output at line 7
            --- expected (\(stale.path):7)
            +++ actual
            @@ -1,2 +1,2 @@
             bits=2
            -bits=4
            +bits=3
            """), failed.output)
        XCTAssertTrue(failed.output.contains("\(recipe.path):3: the recipe failed"), failed.output)
        XCTAssertTrue(failed.output.contains("expectation failed: $x is 3, expected $x < 3"), failed.output)
        XCTAssertTrue(failed.output.contains("\(recipe.path): FAILED (1 expectation passed, 1 failed, "), failed.output)
        XCTAssertTrue(failed.output.hasSuffix("qsh test: 0 of 2 files passed\n"), failed.output)
    }

    func testMissingFileArgumentIsAUsageError() throws {
        let result = try QshProcess.run(["test"])
        XCTAssertEqual(result.status, 2, result.errors)
    }
}
