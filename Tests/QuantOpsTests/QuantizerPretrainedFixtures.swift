import Foundation
import XCTest
@testable import QuantOps

/// The shared pretrained models and CIFAR-10 images, found through QSH_MODELS / QSH_DATA or
/// `../shared` beside the package; tests skip when they are absent.
extension QuantizerFixtures {
    static var modelsDirectory: URL { EngineFixtures.modelsDirectory }

    static var dataDirectory: URL { EngineFixtures.dataDirectory }

    /// A pretrained zoo model, or a skip when the shared models are not there.
    static func zooModel(_ name: String) throws -> Model {
        let entry = try ModelZoo.entry(named: name)
        let url = modelsDirectory.appendingPathComponent(entry.fileName)
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw EngineFixtures.unavailable("shared model \(entry.fileName) not found in \(modelsDirectory.path)")
        }
        return try ModelZoo.build(entry, from: try CheckpointReader.read(contentsOf: url))
    }

    /// `count` images of `file`, one every `records / count` so that all classes appear.
    static func testImages(_ count: Int, normalization: Normalization, file name: String = "test_batch.bin") throws
        -> Tensor
    {
        let file = dataDirectory.appendingPathComponent(name)
        guard FileManager.default.fileExists(atPath: file.path) else {
            throw EngineFixtures.unavailable("CIFAR-10 test batch not found in \(dataDirectory.path)")
        }
        let data = try CIFAR10(name: "cifar10", files: [file])
        return data.batch(Array(Swift.stride(from: 0, to: data.count, by: data.count / count).prefix(count)),
                          normalization: normalization)
    }

}
