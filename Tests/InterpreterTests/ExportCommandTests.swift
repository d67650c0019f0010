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

    /// The top-1 figures of the eval lines in `text`, in order.
    func top1Figures(_ text: String) -> [Double] {
        text.split(separator: "\n").compactMap { line in
            guard line.hasPrefix("top-1 "), let end = line.firstIndex(of: "%") else { return nil }
            return Double(line[line.index(line.startIndex, offsetBy: 6)..<end])
        }
    }

    func testInt8EngineAndIntegerCheckpointThroughTheLanguage() throws {
        let harness = try PTQCommandTests.makeHarness()
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let path = folder.appendingPathComponent("w7.safetensors").path
        XCTAssertEqual(harness.run("""
            load resnet20
            fold bn
            quantize weights bits=7 scheme=symmetric granularity=channel
            quantize activations bits=8 scheme=asymmetric granularity=tensor
            calibrate data=cifar10 samples=64 batch=32
            eval cifar10 limit=300
            eval cifar10 limit=300 engine=int8
            set engine=int8
            layers
            """), .success, harness.errors.text)
        let figures = top1Figures(harness.output.text)
        XCTAssertEqual(figures.count, 2)
        XCTAssertEqual(figures.first ?? 0, figures.last ?? 1, accuracy: 0.67, "within 2 of 300 images")
        // 19 convolutions on integers on any CPU: 7-bit weights never saturate int16 pair sums.
        XCTAssertTrue(harness.output.text.contains("19 of 20 layers on integers"), harness.output.text)
        let row = harness.output.text.split(separator: "\n").first { $0.contains(" layer3.2.conv2 ") }
        XCTAssertTrue(row?.contains("7-bit symmetric/ch") == true && row?.hasSuffix("int8") == true, String(row ?? "no row"))
        XCTAssertTrue(harness.output.text.contains("[1] fully connected layers run in float"), harness.output.text)

        // The integer checkpoint of the folded model loads back into the same state: the same logits.
        let earlier = top1Figures(harness.output.text).count
        XCTAssertEqual(harness.run("""
            set engine=float
            save "\(path)" int8=true
            eval cifar10 limit=300
            load resnet20 from "\(path)"
            quantize activations bits=8 scheme=asymmetric granularity=tensor
            calibrate data=cifar10 samples=64 batch=32
            eval cifar10 limit=300
            """), .success, harness.errors.text)
        XCTAssertTrue(harness.output.text.contains("(20 layers as integer codes)"), harness.output.text)
        let reloaded = Array(top1Figures(harness.output.text).dropFirst(earlier))
        XCTAssertEqual(reloaded.count, 2)
        XCTAssertEqual(reloaded.first, reloaded.last, harness.output.text)
        XCTAssertEqual(harness.run("set engine=fp16"), .recipeFailed)
    }
}
