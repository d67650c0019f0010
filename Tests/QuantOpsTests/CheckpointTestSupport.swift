import Foundation
import XCTest
@testable import QuantOps

/// Where the shared read-only models live: `QSH_MODELS`, else `../shared/models` beside the package.
enum CheckpointTestFiles {
    static var modelsDirectory: URL {
        if let override = ProcessInfo.processInfo.environment["QSH_MODELS"], !override.isEmpty {
            return URL(fileURLWithPath: override)
        }
        let packageRoot = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        return packageRoot.deletingLastPathComponent().appendingPathComponent("shared/models")
    }

    static func model(_ name: String) throws -> URL {
        let url = modelsDirectory.appendingPathComponent(name)
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw XCTSkip("shared model \(name) not found in \(modelsDirectory.path)")
        }
        return url
    }

    static func temporaryDirectory() throws -> URL {
        let url = FileManager.default.temporaryDirectory
            .appendingPathComponent("qsh-checkpoint-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }
}
