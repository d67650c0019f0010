import Foundation
import FuzzSupport
import Interpreter
import QLang

/// Fuzz targets over recipe text and the interpreter's inputs. scripts/fuzz.sh builds this
/// with libFuzzer and picks the harness with QSH_FUZZ_TARGET; see docs/fuzzing.md.
@main
struct FuzzMain {
    static func main() {
        FuzzDriver.main(product: "FuzzQLang", harnesses: ["qlang": QLangHarness.run, "run-record": RunRecordHarness.run],
                        defaultTarget: "qlang")
    }
}

/// The JSON run records `qsh merge` reads: one damaged record beside an intact one.
enum RunRecordHarness {
    /// A valid shard 0 of 2, so that the fuzzed input meets the checks that compare shards.
    static let intact = Data("""
        {"data":[],"evaluations":[{"dataset":"cifar10","images":4,"index":1,"modelSHA256":null,"state":"m",\
        "sweepItem":0,"sweepItemsBefore":0,"top1":50,"top1Correct":2,"top5":100,"top5Correct":4,"variables":{"b":"3"}}],\
        "format":"qsh-run-report-1","models":[],"overrides":{},"recipes":[],"results":{},"seeds":{},"statements":[],\
        "sweep":{"dataSharded":false,"itemCount":2,"items":[{"index":0,"variables":{"b":"3"}}],"recipe":"r.qs",\
        "recipeSHA256":"ab","shard":{"count":2,"index":0}},"threads":1,\
        "timings":{"evaluationSeconds":[0.1],"startedAt":"x","totalSeconds":1},"tool":{"gitCommit":"unknown","name":"qsh","version":"0"}}
        """.utf8)

    static func run(_ bytes: [UInt8]) {
        let inputs = [SweepMerge.Input(path: "intact.json", contents: intact),
                      SweepMerge.Input(path: "fuzz.json", contents: Data(bytes))]
        let merged: SweepMerge
        do {
            merged = try SweepMerge(inputs)
        } catch {
            // Refusals name a file or a shard and say what to do.
            invariant(!error.message.isEmpty && error.hint != nil, "merge refused without a remedy: \(error)")
            return
        }
        // The merged rows are well-formed and the table and figure render.
        invariant(merged.shardsFound.allSatisfy { $0 >= 0 && $0 < merged.shardCount }, "shard index out of range: \(merged.shardsFound)")
        invariant(merged.isComplete == merged.problems.isEmpty, "completeness disagrees with the problems listed")
        for evaluation in merged.evaluations {
            invariant(evaluation.images >= 0 && (0...100).contains(evaluation.top1), "merged row out of range: \(evaluation)")
        }
        _ = merged.resultsTable
    }
}

/// Lexer, parser, printer and the argument checks of `qsh check`.
enum QLangHarness {
    static func run(_ bytes: [UInt8]) {
        // qsh reads recipes as UTF-8; damaged bytes become U+FFFD exactly as here.
        let text = String(decoding: bytes, as: UTF8.self)
        let source = SourceFile(name: "fuzz.qs", text: text)
        let program: Program
        do {
            program = try Parser.parse(source)
        } catch {
            // What `qsh check` prints for a recipe that does not parse.
            checkLocation(error, in: source)
            _ = error.rendered(source: source)
            return
        }
        // parse -> print -> parse gives the same tree, and printing is then a fixed point.
        let printed = Printer.print(program)
        let reparsed: Program
        do {
            reparsed = try Parser.parse(SourceFile(name: "printed.qs", text: printed))
        } catch {
            invariant(false, "printed program does not parse: \(error)\n--- input\n\(text)\n--- printed\n\(printed)")
            return
        }
        invariant(reparsed == program, "printed program parses to another tree\n--- input\n\(text)\n--- printed\n\(printed)")
        let reprinted = Printer.print(reparsed)
        invariant(reprinted == printed, "printing is not a fixed point\n--- first\n\(printed)\n--- second\n\(reprinted)")
        checkRecipe(program, parsedFrom: source)
    }

    /// A diagnostic points into the text: at a line that exists, or just past the last.
    static func checkLocation(_ diagnostic: Diagnostic, in source: SourceFile) {
        let location = diagnostic.location
        var lines = 1
        var previous: Unicode.Scalar?
        for scalar in source.text.unicodeScalars {
            if scalar == "\r" || (scalar == "\n" && previous != "\r") { lines += 1 }
            previous = scalar
        }
        invariant(location.line >= 1 && location.line <= lines, "diagnostic at line \(location.line) of \(lines): \(diagnostic)")
        invariant(location.column >= 1, "diagnostic at column \(location.column): \(diagnostic)")
        invariant(diagnostic.length >= 1, "diagnostic of length \(diagnostic.length)")
    }

    /// Binds every command against the registry without running it, as `qsh check` does after
    /// parsing (the program parsed above, not parsed a third time).
    static func checkRecipe(_ program: Program, parsedFrom source: SourceFile) {
        let output = CapturedOutput()
        let errors = CapturedOutput()
        let session = Session(output: output, errors: errors)
        let status = RecipeRunner(session: session).run(program, parsedFrom: source, checkOnly: true)
        invariant((status == .success) == errors.text.isEmpty,
                  "check returned \(status) with errors \"\(errors.text)\"")
        invariant(session.current == nil, "checking a recipe loaded a model")
    }
}
