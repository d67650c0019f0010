import Foundation
import XCTest

/// `--isa` chooses the vector instructions of the engine's kernels for the whole run; the int8
/// engine's summary line names what it got.
final class InstructionSetTests: XCTestCase {
    static let int8Recipe = """
        load resnet20
        fold bn
        quantize weights bits=7 scheme=symmetric granularity=channel
        quantize activations bits=8 scheme=asymmetric granularity=tensor
        calibrate data=cifar10-train samples=64 method=minmax
        eval cifar10 limit=20 engine=int8
        """

    static var cpuHasAVX512: Bool {
        ((try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? "").contains(" avx512f")
    }

    func engineLine(_ arguments: [String]) throws -> String {
        let result = try QshProcess.run(arguments + ["-c", Self.int8Recipe])
        XCTAssertEqual(result.status, 0, result.errors)
        return result.output.split(separator: "\n").first { $0.hasPrefix("engine int8 (") }.map(String.init) ?? result.output
    }

    func testTheChosenInstructionSetIsTheOneTheEngineRuns() throws {
        XCTAssertTrue(try engineLine(["--isa", "avx2"]).hasPrefix("engine int8 (avx2"))
        guard Self.cpuHasAVX512 else { return }
        XCTAssertTrue(try engineLine(["--isa", "avx512"]).hasPrefix("engine int8 (avx512"))
        // A recipe that runs the int8 engine keeps AVX-512 (its VNNI) under auto.
        XCTAssertTrue(try engineLine([]).hasPrefix("engine int8 (avx512"))
    }

    func testAnUnknownInstructionSetIsAUsageError() throws {
        let result = try QshProcess.run(["--isa", "sse2", "-c", "print 1"])
        XCTAssertEqual(result.status, 2)
        XCTAssertTrue(result.errors.contains("'auto', 'avx2' or 'avx512'"), result.errors)
    }
}
