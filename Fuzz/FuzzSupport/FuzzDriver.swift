import Foundation

/// One fuzz target: called with each input, it aborts (through `invariant`) when the code under
/// test breaks a promise, and otherwise returns.
public typealias Harness = @Sendable ([UInt8]) -> Void

/// Stops the process with the message when a harness's check fails: libFuzzer then saves the
/// input as a crash.
public func invariant(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String) {
    if !condition() {
        FileHandle.standardError.write(Data(("invariant failed: " + message() + "\n").utf8))
        abort()
    }
}

/// The entry point both fuzz binaries share (docs/fuzzing.md). Built with libFuzzer
/// (`-sanitize=fuzzer -DQSH_LIBFUZZER`, as scripts/fuzz.sh does), it fuzzes the harness
/// `QSH_FUZZ_TARGET` names; a plain build replays saved inputs once each: `PRODUCT TARGET FILE...`.
public enum FuzzDriver {
    public static func main(product: String, harnesses: [String: Harness], defaultTarget: String? = nil) -> Never {
        #if QSH_LIBFUZZER
        let name = ProcessInfo.processInfo.environment["QSH_FUZZ_TARGET"] ?? defaultTarget ?? ""
        guard let harness = harnesses[name] else {
            FileHandle.standardError.write(Data("QSH_FUZZ_TARGET=\(name): not one of \(harnesses.keys.sorted())\n".utf8))
            exit(2)
        }
        selectedHarness = harness
        // Hand the command line to libFuzzer's driver.
        exit(runLibFuzzer(LLVMFuzzerTestOneInput))
        #else
        let arguments = Array(CommandLine.arguments.dropFirst())
        guard let name = arguments.first, let harness = harnesses[name] else {
            print("usage: \(product) \(harnesses.keys.sorted().joined(separator: "|")) FILE...")
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
        exit(0)
        #endif
    }
}

/// Set once, before libFuzzer's driver starts calling `LLVMFuzzerTestOneInput` on this thread.
nonisolated(unsafe) private var selectedHarness: Harness = { _ in }

/// libFuzzer calls this once per input.
@_cdecl("LLVMFuzzerTestOneInput")
public func LLVMFuzzerTestOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    selectedHarness(Array(UnsafeBufferPointer(start: data, count: size)))
    return 0
}

#if QSH_LIBFUZZER
/// Runs libFuzzer's driver (`LLVMFuzzerRunDriver`, linked in by -sanitize=fuzzer) over this
/// process's arguments. SwiftPM names the program's entry point itself, so libFuzzer's own
/// `main` cannot be used; the driver is looked up at run time to call it with C conventions.
private func runLibFuzzer(_ callback: @escaping @convention(c) (UnsafePointer<UInt8>, Int) -> CInt) -> CInt {
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
