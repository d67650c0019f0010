import Foundation
import Interpreter
import QuantOps
import XCTest

/// `export onnx` and `eval ... logits to` through the recipe language, on the shared resnet20.
/// scripts/check-onnx-export.py runs the exported files in ONNX Runtime and OpenVINO.
final class ExportCommandTests: XCTestCase {
    func temporaryFolder() throws -> URL {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("export-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        return folder
    }

    func testUncalibratedExportFailsNamingTheTensorAndWritesNothing() throws {
        let harness = try PTQCommandTests.makeHarness()
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let target = folder.appendingPathComponent("w8a8.onnx").path
        XCTAssertEqual(harness.run("""
            load resnet20
            fold bn
            quantize weights bits=8
            quantize activations bits=8
            export onnx "\(target)"
            """), .recipeFailed)
        XCTAssertTrue(harness.errors.text.contains("activation 'input' (the network input)"), harness.errors.text)
        XCTAssertTrue(harness.errors.text.contains("run 'calibrate'"), harness.errors.text)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: folder.path), [])

        XCTAssertEqual(harness.run("""
            calibrate data=cifar10 samples=16 batch=8
            export onnx "\(target)"
            """), .success, harness.errors.text)
        XCTAssertTrue(harness.output.text.contains("exported QDQ ONNX (opset 13)"), harness.output.text)
        XCTAssertTrue(harness.output.text.contains("20 integer weight layers, 21 quantized activations, 20 int32 biases"),
                      harness.output.text)
        XCTAssertGreaterThan(try Data(contentsOf: URL(fileURLWithPath: target)).count, 100_000)
    }

    func testEvalWritesLogitsInEvaluationOrder() throws {
        let harness = try PTQCommandTests.makeHarness()
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let path = folder.appendingPathComponent("logits.npy").path
        XCTAssertEqual(harness.run("load resnet20\neval cifar10 stride=100 logits to \"\(path)\""), .success, harness.errors.text)
        XCTAssertTrue(harness.output.text.contains("wrote logits (100 x 10, float32)"), harness.output.text)
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        let headerLength = Int(data[8]) | Int(data[9]) << 8
        XCTAssertTrue(String(decoding: data[10..<(10 + headerLength)], as: UTF8.self).contains("'shape': (100, 10)"))
        XCTAssertEqual(data.count, 10 + headerLength + 100 * 10 * 4)

        XCTAssertEqual(harness.run("eval cifar10 stride=100 logits \"\(path)\""), .recipeFailed)
    }
}
