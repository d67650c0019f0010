import Foundation
import XCTest

/// QuantOps is a library: what stops a long computation is the caller's business, passed in as
/// `shouldStop`, never the shell's Ctrl-C flag read from inside. Inside it, each concern has one
/// owner, which these source checks hold.
final class LibraryBoundaryTests: XCTestCase {
    static func quantOpsSources() throws -> [URL] {
        let sources = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Sources/QuantOps")
        let files = FileManager.default.enumerator(at: sources, includingPropertiesForKeys: nil)?
            .compactMap { $0 as? URL }.filter { $0.pathExtension == "swift" } ?? []
        XCTAssertGreaterThan(files.count, 20, "QuantOps sources not found under \(sources.path)")
        return files
    }

    /// Whole-model inference has one executor: only `CompiledModel` chooses between oneDNN and the
    /// plain kernels, and only the training convolutions beside it decide for the tape. A call
    /// site that picks a backend itself would let calibration or analysis drift from `eval`.
    func testOnlyTheExecutorsChooseTheConvolutionBackend() throws {
        let owners: Set<String> = ["CompiledModel.swift", "ForwardPass.swift", "Convolution.swift", "GradientTape.swift",
                                   "DNNLTrainingConvolution.swift"]
        var choosers: [String] = []
        for file in try Self.quantOpsSources() where !owners.contains(file.lastPathComponent) {
            let text = try String(contentsOf: file, encoding: .utf8)
            if text.contains("ConvolutionBackend.current") || text.contains("runPlain(") { choosers.append(file.lastPathComponent) }
        }
        XCTAssertEqual(choosers.sorted(), [], "QuantOps files that choose the convolution backend themselves; run the model through CompiledModel")
    }

    /// One parallel loop: `parallelFor`, on the OpenMP team that oneDNN runs on.
    func testOneParallelLoop() throws {
        var others: [String] = []
        for file in try Self.quantOpsSources() where file.lastPathComponent != "OpenMPTeam.swift" {
            let text = try String(contentsOf: file, encoding: .utf8)
            if text.contains("OpenMPTeam.parallelFor") || text.contains("GOMP_parallel") { others.append(file.lastPathComponent) }
        }
        XCTAssertEqual(others, [], "files that start parallel regions of their own; call parallelFor")
    }

    func testQuantOpsNeverReadsTheShellsInterruptFlag() throws {
        let files = try Self.quantOpsSources()
        var readers: [String] = []
        for file in files {
            let text = try String(contentsOf: file, encoding: .utf8)
            if ["qsh_interrupt_requested", "qsh_clear_interrupt", "qsh_request_interrupt"].contains(where: text.contains) {
                readers.append(file.lastPathComponent)
            }
        }
        XCTAssertEqual(readers, [], "QuantOps files that read the shell's interrupt flag; take a shouldStop closure instead")
    }
}
