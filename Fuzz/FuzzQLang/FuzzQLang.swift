import Foundation
import Interpreter
import QLang

/// Fuzz targets over recipe text and the interpreter's inputs. scripts/fuzz.sh builds this
/// with libFuzzer and picks the harness with QSH_FUZZ_TARGET; see docs/fuzzing.md.
let harnesses: [String: @Sendable ([UInt8]) -> Void] = [
    "qlang": QLangHarness.run,
    "run-record": RunRecordHarness.run,
]

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

func invariant(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String) {
    if !condition() {
        FileHandle.standardError.write(Data(("invariant failed: " + message() + "\n").utf8))
        abort()
    }
}

/// The harness QSH_FUZZ_TARGET names.
let selectedHarness: @Sendable ([UInt8]) -> Void = {
    let name = ProcessInfo.processInfo.environment["QSH_FUZZ_TARGET"] ?? "qlang"
    guard let harness = harnesses[name] else {
        FileHandle.standardError.write(Data("QSH_FUZZ_TARGET=\(name): not one of \(harnesses.keys.sorted())\n".utf8))
        exit(2)
    }
    return harness
}()

/// libFuzzer calls this once per input.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    selectedHarness(Array(UnsafeBufferPointer(start: data, count: size)))
    return 0
}

@main
struct FuzzMain {
    static func main() {
        #if QSH_LIBFUZZER
        // Built with -sanitize=fuzzer (scripts/fuzz.sh): hand the command line to libFuzzer's driver.
        exit(runLibFuzzer(fuzz))
        #else
        // A plain build replays saved inputs (a corpus, a reproducer) once each:
        // FuzzQLang TARGET FILE...
        let arguments = Array(CommandLine.arguments.dropFirst())
        guard let name = arguments.first, let harness = harnesses[name] else {
            print("usage: FuzzQLang \(harnesses.keys.sorted().joined(separator: "|")) FILE...")
            exit(2)
        }
        for path in arguments.dropFirst() {
            guard let data = FileManager.default.contents(atPath: path) else {
                print("\(path): cannot be read")
                exit(1)
            }
            harness([UInt8](data))
        }
        print("\(arguments.count - 1) inputs ran")
        #endif
    }
}

#if QSH_LIBFUZZER
/// Runs libFuzzer's driver (`LLVMFuzzerRunDriver`, linked in by -sanitize=fuzzer) over this
/// process's arguments. SwiftPM names the program's entry point itself, so libFuzzer's own
/// `main` cannot be used; the driver is looked up at run time to call it with C conventions.
func runLibFuzzer(_ callback: @escaping @convention(c) (UnsafePointer<UInt8>, Int) -> CInt) -> CInt {
    typealias Driver = @convention(c) (
        UnsafeMutablePointer<CInt>, UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
        @convention(c) (UnsafePointer<UInt8>, Int) -> CInt) -> CInt
    guard let symbol = dlsym(dlopen(nil, RTLD_NOW), "LLVMFuzzerRunDriver") else {
        FileHandle.standardError.write(Data("LLVMFuzzerRunDriver is missing: build with -sanitize=fuzzer\n".utf8))
        return 2
    }
    var argc = CommandLine.argc
    var argv = CommandLine.unsafeArgv
    return unsafeBitCast(symbol, to: Driver.self)(&argc, &argv, callback)
}
#endif
