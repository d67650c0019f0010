import Interpreter
import XCTest

final class DocTestRunnerTests: XCTestCase {
    func testExtractsFencesWithInfoStringLinesAndIndentation() {
        let document = """
            intro
            ```qsh no-run
            load resnet20
            ```

            ```output
            loaded
            ```
            text
              ~~~~ qsh
              print 1
               ```
              ~~~~
            ```` output
            ```
            x
            ````
            """
        let blocks = MarkdownBlocks.extract(from: document)
        XCTAssertEqual(blocks.map(\.language), ["qsh", "output", "qsh", "output"])
        XCTAssertEqual(blocks[0].attributes, ["no-run"])
        XCTAssertEqual(blocks[0].fenceLine, 2)
        XCTAssertEqual(blocks[0].firstContentLine, 3)
        XCTAssertEqual(blocks[0].closingLine, 4)
        XCTAssertEqual(blocks[0].text, "load resnet20")
        XCTAssertTrue(blocks[1].followsPreviousBlock)
        XCTAssertFalse(blocks[2].followsPreviousBlock, "text stands between them")
        // The fence's indentation is removed from the content; a shorter or other fence does not close it.
        XCTAssertEqual(blocks[2].lines, ["print 1", " ```"])
        XCTAssertEqual(blocks[3].lines, ["```", "x"])
        XCTAssertTrue(blocks[3].followsPreviousBlock)
    }

    func testUnclosedFenceRunsToTheEndAndInlineCodeIsNoFence() {
        let blocks = MarkdownBlocks.extract(from: "```qsh`x`\nno\n```qsh\nprint 1\nprint 2")
        XCTAssertEqual(blocks.count, 1)
        XCTAssertEqual(blocks[0].fenceLine, 3)
        XCTAssertEqual(blocks[0].lines, ["print 1", "print 2"])
        XCTAssertEqual(blocks[0].closingLine, 5)
    }

    func testInlineWildcardMatchesAnyTextWithinALine() {
        XCTAssertTrue(OutputPattern.lineMatches(pattern: "top-1 [..]%  ([..] images, [..] s)", "top-1 91.73%  (500 images, 0.31 s)"))
        XCTAssertTrue(OutputPattern.lineMatches(pattern: "a[..]", "a"))
        XCTAssertTrue(OutputPattern.lineMatches(pattern: "[..]", ""))
        XCTAssertFalse(OutputPattern.lineMatches(pattern: "top-1 [..]%", "top-5 91%"))
        XCTAssertFalse(OutputPattern.lineMatches(pattern: "a[..]b", "ba"))
        // A suffix must not reuse text the prefix consumed.
        XCTAssertFalse(OutputPattern.lineMatches(pattern: "ab[..]bc", "abc"))
        XCTAssertFalse(OutputPattern.lineMatches(pattern: "exact", "exact "))
    }

    func testLineWildcardMatchesAnyNumberOfLines() {
        let pattern = OutputPattern("first\n...\nlast\n")
        XCTAssertTrue(pattern.matches("first\nlast"))
        XCTAssertTrue(pattern.matches("first\na\nb\nlast\n\n"))
        XCTAssertFalse(pattern.matches("first\na\nlast\nmore"))
        XCTAssertTrue(OutputPattern("...\nx\n...").matches("a\nx\nb\nx"))
        XCTAssertFalse(OutputPattern("...\nx\n...").matches("a\nb"))
        XCTAssertTrue(OutputPattern("a   \n\n").matches("a\n"), "trailing spaces and blank lines do not count")
    }

    func testUnifiedDiffShowsChangedLinesWithContextAndLineNumbers() {
        let expected = (1...10).map { "line \($0)" }
        var actual = expected
        actual[4] = "line five"
        actual.append("line 11")
        let diff = LineDiff.unified(expected: expected, actual: actual, expectedLabel: "expected (a.md:3)")
        XCTAssertEqual(diff, """
            --- expected (a.md:3)
            +++ actual
            @@ -2,9 +2,10 @@
             line 2
             line 3
             line 4
            -line 5
            +line five
             line 6
             line 7
             line 8
             line 9
             line 10
            +line 11
            """)
        XCTAssertEqual(LineDiff.unified(expected: ["a"], actual: ["a"]), "--- expected\n+++ actual")
    }

    func testBlocksShareASessionAndMismatchesGiveFileLineAndDiff() {
        let document = """
            # Title
            ```qsh
            let lam = 0.4
            print "lambda=$lam took 1.2 s"
            ```

            ```output
            lambda=0.4 took [..] s
            ```

            ```qsh
            print "again $lam"
            ```
            ```output
            again 0.5
            ```
            """
        let result = DocTestRunner().runMarkdown(document, name: "guide.md")
        XCTAssertEqual(result.passed, 1)
        XCTAssertEqual(result.failures.count, 1)
        let failure = result.failures[0]
        XCTAssertEqual(failure.line, 11)
        XCTAssertEqual(failure.description, """
            guide.md:11: the output differs from the expected output at line 14
            --- expected (guide.md:14)
            +++ actual
            @@ -1,1 +1,1 @@
            -again 0.5
            +again 0.4
            """)
    }

    func testErrorsNameTheDocumentLineAndFailsAttributeInvertsTheCheck() {
        let document = """
            ```qsh
            print 1
            print $missing
            ```

            ```qsh fails
            expect top1 > 1
            ```

            ```output
            [..]: error: no result named 'top1'
            ...
            ```

            ```qsh fails
            print 2
            ```

            ```qsh ignore
            this is not a command
            ```

            ```qsh typo
            ```
            """
        let result = DocTestRunner().runMarkdown(document, name: "d.md")
        XCTAssertEqual(result.passed, 1)
        XCTAssertEqual(result.skipped, 1)
        XCTAssertEqual(result.failures.map(\.line), [1, 15, 23])
        XCTAssertEqual(result.failures[0].message, "the block failed")
        XCTAssertTrue(result.failures[0].detail.contains("d.md:3:7: error: undefined variable '$missing'"), result.failures[0].detail)
        XCTAssertTrue(result.failures[1].message.contains("marked 'fails'"))
        XCTAssertTrue(result.failures[2].message.contains("unknown block attribute 'typo'"))
    }

    func testCheckOnlyModeChecksCommandsWithoutRunningThem() {
        let document = "```qsh\nload resnet20\neval cifar10\n```\n\n```qsh\nquantize all bitz=4\n```\n"
        let result = DocTestRunner(checkOnly: true).runMarkdown(document, name: "c.md")
        XCTAssertEqual(result.passed, 1)
        XCTAssertEqual(result.failures.map(\.line), [6])
        XCTAssertTrue(result.failures[0].detail.contains("bitz"), result.failures[0].detail)
    }

    func testNoRunBlockWithAnUnknownCommandOrOptionFailsWithFileAndLine() {
        let document = """
            # Commands
            ```qsh no-run
            load resnet20
            calibrate batches=4 loss=kl+ce
            ```

            ```qsh no-run
            quantize all bits=4
            ```

            ```qsh no-run
            set mode=in
            ```
            """
        let result = DocTestRunner().runMarkdown(document, name: "lang.md")
        XCTAssertEqual(result.passed, 0)
        XCTAssertEqual(result.failures.map(\.line), [2, 7, 11])
        XCTAssertEqual(result.failures.map(\.message), Array(repeating: "the block does not pass 'qsh check'", count: 3))
        XCTAssertTrue(result.failures[0].detail.contains("lang.md:4:11: error: unknown option 'batches' for 'calibrate'"),
                      result.failures[0].detail)
        XCTAssertTrue(result.failures[1].detail.contains("lang.md:8:10: error: 'quantize' has no form 'all'"),
                      result.failures[1].detail)
        XCTAssertTrue(result.failures[2].detail.contains("lang.md:12:5: error: unknown option 'mode' for 'set'"),
                      result.failures[2].detail)
        XCTAssertTrue(result.failures[0].description.hasPrefix("lang.md:2: the block does not pass 'qsh check'"))
    }

    func testNoRunBlockOfRealCommandsPassesWithoutLoadingAModel() {
        // No checkpoint named here exists: a no-run block is bound against the registry, not run.
        let document = """
            ```qsh no-run
            load resnet20 from "no-such-checkpoint.th"
            let lams = 0.2, 0.4
            for lam in $lams {
                compensate dfmpc lambda=$lam
                eval cifar10
                expect top1 >= 85
            }
            calibrate data=cifar10-train samples=512 method=entropy
            ```

            ```qsh no-run
            print "lambda = $lam"
            ```
            """
        let result = DocTestRunner().runMarkdown(document, name: "ok.md")
        XCTAssertTrue(result.succeeded, result.failures.map(\.description).joined(separator: "\n"))
        XCTAssertEqual(result.passed, 2)
    }

    func testNoRunBlockMarkedFailsMustFailTheCheck() {
        let document = "```qsh no-run fails\nternary layers=1, 3\n```\n\n```qsh no-run fails\nternary layer 3..\n```\n"
        let result = DocTestRunner().runMarkdown(document, name: "f.md")
        XCTAssertEqual(result.passed, 1)
        XCTAssertEqual(result.failures.map(\.line), [5])
        XCTAssertTrue(result.failures[0].message.contains("passes 'qsh check'"), result.failures[0].message)
    }

    func testRecipeCountsExpectationsAndReportsTheFailingLine() {
        let runner = DocTestRunner(setup: { session in session.values["top1"] = 91.5 })
        let passing = runner.runRecipe("expect top1 > 90\nexpect top1 < 95\n", name: "ok.qs")
        XCTAssertTrue(passing.succeeded)
        XCTAssertEqual(passing.passed, 2)
        let failing = runner.runRecipe("expect top1 > 90\n\nexpect top1 > 92\n", name: "bad.qs")
        XCTAssertEqual(failing.passed, 1)
        XCTAssertEqual(failing.failures.first?.line, 3)
        XCTAssertTrue(failing.failures.first?.detail.contains("expectation failed: top1 is 91.5") == true)
    }

    func testReportListsEachFileAndTheExitStatus() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("doctest-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let good = directory.appendingPathComponent("good.md").path
        let bad = directory.appendingPathComponent("bad.qs").path
        try "```qsh\nprint 1\n```\n```output\n1\n```\n".write(toFile: good, atomically: true, encoding: .utf8)
        try "print 1\nexpect top1 > 1\n".write(toFile: bad, atomically: true, encoding: .utf8)
        let report = CapturedOutput()
        XCTAssertEqual(DocTestRunner().run(paths: [good], report: report), .success)
        XCTAssertTrue(report.text.hasPrefix("\(good): ok (1 block passed, "), report.text)
        report.clear()
        XCTAssertEqual(DocTestRunner().run(paths: [good, bad, directory.appendingPathComponent("none.md").path], report: report),
                       .recipeFailed)
        XCTAssertTrue(report.text.contains("\(bad):2: the recipe failed"), report.text)
        XCTAssertTrue(report.text.contains("none.md:1: cannot read the file"), report.text)
        XCTAssertTrue(report.text.hasSuffix("qsh test: 1 of 3 files passed\n"), report.text)
    }
}
