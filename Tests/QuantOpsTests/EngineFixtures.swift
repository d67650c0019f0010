import Foundation
import QuantOps
import XCTest

/// Locations of the shared models and data: `QSH_MODELS` / `QSH_DATA`, else `../shared` beside
/// the package root.
enum EngineFixtures {
    static let packageRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let shared = packageRoot.deletingLastPathComponent().appendingPathComponent("shared")

    static var modelsDirectory: URL {
        ProcessInfo.processInfo.environment["QSH_MODELS"].map { URL(fileURLWithPath: $0) }
            ?? shared.appendingPathComponent("models")
    }

    /// The folder holding `test_batch.bin`, found the way qsh finds it (`QSH_DATA` names the folder
    /// that holds `cifar-10-batches-bin`), falling back to `../shared/data`.
    static var dataDirectory: URL {
        let searched = ResourceDirectories(kind: .data).searchPath + [shared.appendingPathComponent("data")]
        return (try? Fetcher.locateCIFAR10(in: searched, allowDownload: false))
            ?? shared.appendingPathComponent("data/cifar-10-batches-bin")
    }

    struct MissingSharedFile: Error, CustomStringConvertible {
        var description: String
    }

    /// Outside CI a missing shared file skips the test; in CI (`CI=true`) it fails it, so that a
    /// wrong path can never turn the numerical checks into silent skips.
    static func unavailable(_ message: String) -> Error {
        ProcessInfo.processInfo.environment["CI"] == "true" ? MissingSharedFile(description: message) : XCTSkip(message)
    }

    static var goldenFile: URL { shared.appendingPathComponent("golden/fp32_logits.json") }

    static func zooModel(_ name: String) throws -> Model {
        let entry = try ModelZoo.entry(named: name)
        let file = modelsDirectory.appendingPathComponent(entry.fileName)
        guard FileManager.default.fileExists(atPath: file.path) else {
            throw unavailable("\(file.path) is not available")
        }
        return try ModelZoo.build(entry, from: try CheckpointReader.read(contentsOf: file))
    }

    static func testSet() throws -> CIFAR10 {
        let file = dataDirectory.appendingPathComponent("test_batch.bin")
        guard FileManager.default.fileExists(atPath: file.path) else { throw unavailable("\(file.path) is not available") }
        return try CIFAR10.load(named: "cifar10", from: dataDirectory)
    }

    /// max |a - b| / max |b|: the relative error measure of the golden checks.
    static func relativeError(_ a: [Float], _ b: [Float]) -> Float {
        let difference = zip(a, b).map { abs($0 - $1) }.max() ?? 0
        let scale = b.map(abs).max() ?? 0
        return difference / max(scale, 1e-12)
    }
}
