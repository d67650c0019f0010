import Foundation
import XCTest
@testable import QuantOps

final class CheckpointTorchFormatTests: XCTestCase {
    /// akamaster ResNet-(6n+2): stem conv+BN (5 tensors), 3n blocks of two conv+BN pairs, linear.
    private func akamasterTensorCount(depth: Int) -> Int { 5 + (depth - 2) / 6 * 3 * 10 + 2 }

    func testReadsEveryLegacyAkamasterCheckpoint() throws {
        for (file, depth) in [("resnet20-12fca82f.th", 20), ("resnet32-d509ac18.th", 32),
                              ("resnet44-014dd654.th", 44), ("resnet56-4bfd9763.th", 56)] {
            let checkpoint = try CheckpointReader.readCheckpoint(contentsOf: try CheckpointTestFiles.model(file))
            XCTAssertEqual(checkpoint.format, .legacyPickle, file)
            XCTAssertEqual(checkpoint.stateDict.count, akamasterTensorCount(depth: depth), file)
            XCTAssertFalse(checkpoint.stateDict.keys.contains { $0.hasPrefix("module.") }, file)
            XCTAssertEqual(checkpoint.stateDict.keys.first, "conv1.weight", file)
            XCTAssertEqual(checkpoint.stateDict["linear.weight"]?.tensor.shape, [10, 64], file)
            XCTAssertNotNil(checkpoint.metadata["best_prec1"].flatMap(Double.init), file)
        }
    }

    func testResNet20IsIdenticalInAllThreeFormats() throws {
        let legacy = try CheckpointReader.readCheckpoint(contentsOf: try CheckpointTestFiles.model("resnet20-12fca82f.th"))
        let zip = try CheckpointReader.readCheckpoint(contentsOf: try CheckpointTestFiles.model("resnet20-zipformat.pt"))
        let safe = try CheckpointReader.readCheckpoint(contentsOf: try CheckpointTestFiles.model("resnet20.safetensors"))
        XCTAssertEqual(zip.format, .torchZip)
        // Training recorded its best validation accuracy, 91.78 %, beside the weights.
        XCTAssertEqual(Double(legacy.metadata["best_prec1"] ?? "") ?? 0, 91.78, accuracy: 0.001)
        XCTAssertEqual(legacy.stateDict.keys, zip.stateDict.keys, "pickle formats keep the module's key order")
        XCTAssertEqual(Set(legacy.stateDict.keys), Set(safe.stateDict.keys))
        for key in legacy.stateDict.keys {
            XCTAssertEqual(legacy.stateDict[key], zip.stateDict[key], key)
            XCTAssertEqual(legacy.stateDict[key], safe.stateDict[key], key)
        }
    }

    func testNeuronMergingResNet56KeepsInt64Counters() throws {
        let checkpoint = try CheckpointReader.readCheckpoint(contentsOf: try CheckpointTestFiles.model("nm-resnet56.pth.tar"))
        let dict = checkpoint.stateDict
        XCTAssertNotNil(checkpoint.metadata["acc"].flatMap(Double.init))
        XCTAssertEqual(dict["conv1.weight"]?.tensor.shape, [16, 3, 3, 3])
        XCTAssertEqual(dict["fc.weight"]?.tensor.shape, [10, 64])
        XCTAssertEqual(dict["layer2.0.downsample.0.weight"]?.tensor.shape, [32, 16, 1, 1])
        let counters = dict.keys.filter { $0.hasSuffix("num_batches_tracked") }
        XCTAssertFalse(counters.isEmpty)
        for key in counters {
            let entry = try XCTUnwrap(dict[key])
            XCTAssertEqual(entry.elementType, .int64, key)
            XCTAssertEqual(entry.tensor.shape, [], key)
            XCTAssertEqual(entry.tensor.data[0], entry.tensor.data[0].rounded(), key)
            XCTAssertGreaterThanOrEqual(entry.tensor.data[0], 0, key)
        }
        XCTAssertEqual(dict["bn1.weight"]?.elementType, .float32)
    }

    func testLegacyCheckpointRoundTripsThroughSafeTensors() throws {
        let original = try CheckpointReader.read(contentsOf: try CheckpointTestFiles.model("nm-resnet56.pth.tar"))
        let directory = try CheckpointTestFiles.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let url = directory.appendingPathComponent("nm-resnet56.safetensors")
        try SafeTensorsWriter.write(original, to: url)
        let copy = try CheckpointReader.read(contentsOf: url)
        XCTAssertEqual(copy, original)
        XCTAssertEqual(copy.keys, original.keys)
    }
}
