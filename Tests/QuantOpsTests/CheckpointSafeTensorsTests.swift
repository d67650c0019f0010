import Foundation
import XCTest
@testable import QuantOps

final class CheckpointSafeTensorsTests: XCTestCase {
    func testReadsSharedResNet20() throws {
        let checkpoint = try CheckpointReader.readCheckpoint(contentsOf: try CheckpointTestFiles.model("resnet20.safetensors"))
        XCTAssertEqual(checkpoint.format, .safetensors)
        let dict = checkpoint.stateDict
        // ResNet-20: stem conv+BN (5 tensors), 9 blocks of 2 conv+BN (10 each), linear (2).
        XCTAssertEqual(dict.count, 5 + 9 * 10 + 2)
        XCTAssertEqual(dict["conv1.weight"]?.tensor.shape, [16, 3, 3, 3])
        XCTAssertEqual(dict["layer3.2.conv2.weight"]?.tensor.shape, [64, 64, 3, 3])
        XCTAssertEqual(dict["linear.weight"]?.tensor.shape, [10, 64])
        XCTAssertEqual(dict["linear.bias"]?.tensor.shape, [10])
        XCTAssertEqual(dict["bn1.running_var"]?.elementType, .float32)
        // Running variances are positive; a misread offset would show garbage here.
        XCTAssertTrue(dict["bn1.running_var"]!.tensor.data.allSatisfy { $0 > 0 && $0.isFinite })
    }

    func testRoundTripKeepsOrderTypesAndValues() throws {
        var dict = StateDict()
        dict["z.weight"] = .init(tensor: Tensor(shape: [2, 3], data: [1, -2, 3.5, 0, 1e-8, -7e30]))
        dict["a.num_batches_tracked"] = .init(tensor: Tensor(shape: [], data: [12345]), elementType: .int64)
        dict["m.half"] = .init(tensor: Tensor(shape: [3], data: [0.5, -2, 65504]), elementType: .float16)
        dict["m.double"] = .init(tensor: Tensor(shape: [1], data: [3.25]), elementType: .float64)
        dict["m.bf16"] = .init(tensor: Tensor(shape: [2], data: [1, -0.5]), elementType: .bfloat16)
        dict["m.bytes"] = .init(tensor: Tensor(shape: [2], data: [255, 0]), elementType: .uint8)
        dict["m.empty"] = .init(tensor: Tensor(shape: [0, 4], data: []))
        let directory = try CheckpointTestFiles.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let url = directory.appendingPathComponent("round \"trip\".safetensors")
        try SafeTensorsWriter.write(dict, to: url, metadata: ["format": "pt", "note": "quote \" and\nnewline"])
        let checkpoint = try CheckpointReader.readCheckpoint(contentsOf: url)
        XCTAssertEqual(checkpoint.stateDict, dict)
        XCTAssertEqual(checkpoint.stateDict.keys, dict.keys)
        XCTAssertEqual(checkpoint.metadata, ["format": "pt", "note": "quote \" and\nnewline"])
        // Only the finished file remains: no temporary left beside it.
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory.path), [url.lastPathComponent])
        // The data section starts 8-byte aligned.
        let bytes = try Data(contentsOf: url)
        let headerLength = bytes.prefix(8).enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        XCTAssertEqual((8 + headerLength) % 8, 0)
    }

    func testSharedFileRoundTripsBitExactly() throws {
        let source = try CheckpointTestFiles.model("resnet20.safetensors")
        let original = try CheckpointReader.read(contentsOf: source)
        let directory = try CheckpointTestFiles.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let copy = directory.appendingPathComponent("copy.safetensors")
        try SafeTensorsWriter.write(original, to: copy)
        XCTAssertEqual(try CheckpointReader.read(contentsOf: copy), original)
        // Overwriting an existing file replaces it whole.
        try SafeTensorsWriter.write(original, to: copy, metadata: ["again": "1"])
        XCTAssertEqual(try CheckpointReader.readCheckpoint(contentsOf: copy).metadata, ["again": "1"])
    }

    func testHalfPrecisionConversionIsExactOnRepresentableValues() {
        for value: Float in [0, -0.0, 1, -1, 0.333251953125, 65504, 6.1035156e-05, 5.9604645e-08, .infinity, -.infinity] {
            XCTAssertEqual(ElementCodec.floatFromHalf(ElementCodec.halfFromFloat(value)), value, "\(value)")
        }
        XCTAssertEqual(ElementCodec.halfFromFloat(1e6), 0x7C00, "overflow becomes infinity")
        XCTAssertTrue(ElementCodec.floatFromHalf(ElementCodec.halfFromFloat(.nan)).isNaN)
    }

    func testWrongOffsetsAreReportedNotTrusted() throws {
        let header = #"{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,12]}}"#
        var bytes = withUnsafeBytes(of: UInt64(header.utf8.count).littleEndian) { Array($0) }
        bytes += Array(header.utf8) + [UInt8](repeating: 0, count: 16)
        XCTAssertThrowsError(try SafeTensorsReader.read(bytes, fileName: "bad.safetensors")) { error in
            let message = "\(error)"
            XCTAssertTrue(message.hasPrefix("bad.safetensors: "), message)
            XCTAssertTrue(message.contains("`w`"), message)
        }
    }

    func testTruncatedDataIsReported() throws {
        let header = #"{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#
        var bytes = withUnsafeBytes(of: UInt64(header.utf8.count).littleEndian) { Array($0) }
        bytes += Array(header.utf8) + [UInt8](repeating: 0, count: 8)
        XCTAssertThrowsError(try SafeTensorsReader.read(bytes, fileName: "short.safetensors")) { error in
            XCTAssertEqual((error as? CheckpointError)?.kind, .truncated)
        }
    }

    /// DataParallel prefixes every key, once per wrapping; a `module.` on only some keys is a
    /// submodule's name. Reading is idempotent: what is written back reads back the same
    /// (found by the safetensors fuzz target: `module.module.x` beside `bn.bias` lost a prefix
    /// on every round trip).
    func testDataParallelPrefixIsStrippedOnlyWhenEveryKeyHasItAndReadingIsIdempotent() throws {
        let directory = try CheckpointTestFiles.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        func readBack(_ keys: [String]) throws -> [String] {
            var dict = StateDict()
            for key in keys { dict[key] = .init(tensor: Tensor(shape: [1], data: [1])) }
            let first = directory.appendingPathComponent("first.safetensors")
            try SafeTensorsWriter.write(dict, to: first)
            let read = try CheckpointReader.read(contentsOf: first)
            let second = directory.appendingPathComponent("second.safetensors")
            try SafeTensorsWriter.write(read, to: second)
            XCTAssertEqual(try CheckpointReader.read(contentsOf: second).keys, read.keys, "\(keys)")
            return read.keys
        }
        XCTAssertEqual(try readBack(["module.conv.weight", "module.fc.bias"]), ["conv.weight", "fc.bias"])
        XCTAssertEqual(try readBack(["module.module.conv.weight", "module.module.fc.bias"]), ["conv.weight", "fc.bias"])
        XCTAssertEqual(try readBack(["module.module._tracked", "bn.bias"]), ["module.module._tracked", "bn.bias"])
    }
}
