import Foundation
import XCTest

/// QuantOps is a library: what stops a long computation is the caller's business, passed in as
/// `shouldStop`, never the shell's Ctrl-C flag read from inside.
final class LibraryBoundaryTests: XCTestCase {
    func testQuantOpsNeverReadsTheShellsInterruptFlag() throws {
        let sources = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Sources/QuantOps")
        let files = FileManager.default.enumerator(at: sources, includingPropertiesForKeys: nil)?
            .compactMap { $0 as? URL }.filter { $0.pathExtension == "swift" } ?? []
        XCTAssertGreaterThan(files.count, 20, "QuantOps sources not found under \(sources.path)")
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
