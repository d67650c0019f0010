import Foundation
import XCTest

final class CommandLineTests: XCTestCase {
    func temporaryFile(_ name: String, _ text: String) throws -> URL {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("qsh-cli-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let file = directory.appendingPathComponent(name)
        try text.write(to: file, atomically: true, encoding: .utf8)
        addTeardownBlock { try? FileManager.default.removeItem(at: directory) }
        return file
    }

    func testVersionAndHelp() throws {
        let version = try QshProcess.run(["--version"])
        XCTAssertEqual(version.status, 0)
        XCTAssertTrue(version.output.hasPrefix("0."), version.output)
        let help = try QshProcess.run(["--help"])
        XCTAssertEqual(help.status, 0)
        XCTAssertTrue(help.output.contains("USAGE"), help.output)
    }

    func testInlineRecipe() throws {
        let result = try QshProcess.run(["-c", "let x = 3; for i in 1..$x { print $i }"])
        XCTAssertEqual(result.status, 0, result.errors)
        XCTAssertEqual(result.output, "1\n2\n3\n")
    }

    func testPipedRecipe() throws {
        let result = try QshProcess.run([], input: "let greeting = \"hi\"\nprint $greeting\n")
        XCTAssertEqual(result.status, 0, result.errors)
        XCTAssertEqual(result.output, "hi\n")
    }

    func testRecipeFileWithSetOverride() throws {
        let recipe = try temporaryFile("sweep.qs", "let lam = 0.4  # default\nprint \"lambda=$lam\"\n")
        let plain = try QshProcess.run([recipe.path])
        XCTAssertEqual(plain.output, "lambda=0.4\n")
        let overridden = try QshProcess.run([recipe.path, "--set", "lam=0.5"])
        XCTAssertEqual(overridden.status, 0, overridden.errors)
        XCTAssertEqual(overridden.output, "lambda=0.5\n")
    }

    func testFailedExpectExitsOneWithLocation() throws {
        let recipe = try temporaryFile("check.qs", "let top = 90\nexpect $top >= 95\nprint \"not reached\"\n")
        let result = try QshProcess.run([recipe.path])
        XCTAssertEqual(result.status, 1)
        XCTAssertTrue(result.errors.contains("check.qs:2:1: error: expectation failed"), result.errors)
        XCTAssertTrue(result.errors.contains("^"), result.errors)
        XCTAssertEqual(result.output, "")
    }

    func testParseErrorExitsOneWithCaret() throws {
        let result = try QshProcess.run(["-c", "print \"unterminated"])
        XCTAssertEqual(result.status, 1)
        XCTAssertTrue(result.errors.contains("<-c>:1:7: error:"), result.errors)
    }

    func testUsageErrorsExitTwo() throws {
        XCTAssertEqual(try QshProcess.run(["--no-such-flag"]).status, 2)
        let missing = try QshProcess.run(["/nonexistent/recipe.qs"])
        XCTAssertEqual(missing.status, 2)
        XCTAssertTrue(missing.errors.contains("cannot read recipe"), missing.errors)
        XCTAssertEqual(try QshProcess.run(["-c", "print 1", "--set", "novalue"]).status, 2)
    }

    func testCheckValidatesWithoutRunning() throws {
        let good = try temporaryFile("good.qs", "load resnet20\nfold bn\nternary layer 3..\ncompensate dfmpc lambda=0.4\neval cifar10\n")
        let ok = try QshProcess.run(["check", good.path])
        XCTAssertEqual(ok.status, 0, ok.errors)
        XCTAssertTrue(ok.output.contains("good.qs: ok"))
        let bad = try temporaryFile("bad.qs", "load resnet20\ncompensate dfmpc lamda=0.4\n")
        let failed = try QshProcess.run(["check", bad.path])
        XCTAssertEqual(failed.status, 1)
        XCTAssertTrue(failed.errors.contains("bad.qs:2:18: error: unknown option 'lamda'"), failed.errors)
    }
}
