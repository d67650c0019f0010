import Foundation
import QuantOps
import XCTest

/// PyTorch's float32 logits for 20 test images per model: the engine must compute the same function.
final class GoldenLogitsTests: XCTestCase {
    static let zooNames = ["aka_resnet20": "resnet20", "aka_resnet32": "resnet32", "aka_resnet44": "resnet44",
                           "aka_resnet56": "resnet56", "nm_resnet56": "nm-resnet56"]

    func checkGolden(_ goldenKey: String) throws {
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: EngineFixtures.goldenFile)) as? [String: Any]
        guard let json, let records = json["records"] as? [Int], let golden = json[goldenKey] as? [String: Any],
              let mean = golden["mean"] as? [Double], let std = golden["std"] as? [Double],
              let labels = golden["labels"] as? [Int], let logits = golden["logits"] as? [[Double]] else {
            return XCTFail("\(EngineFixtures.goldenFile.path) has no usable entry \(goldenKey)")
        }
        let name = try XCTUnwrap(Self.zooNames[goldenKey])
        let model = try EngineFixtures.zooModel(name)
        XCTAssertEqual(model.normalization, Normalization(mean: mean.map(Float.init), std: std.map(Float.init)))
        let dataset = try EngineFixtures.testSet()
        XCTAssertEqual(records.map { Int(dataset.labels[$0]) }, labels)

        let expected = logits.flatMap { $0.map(Float.init) }
        let saved = ConvolutionBackend.current
        defer { ConvolutionBackend.current = saved }
        for backend in [ConvolutionBackend.oneDNN, .im2colGEMM] {
            ConvolutionBackend.current = backend
            let output = try ForwardPass.logits(model, input: dataset.batch(records, normalization: model.normalization))
            XCTAssertEqual(output.shape, [records.count, 10])
            XCTAssertLessThan(EngineFixtures.relativeError(output.data, expected), 1e-4, "\(name) logits (\(backend)) differ from PyTorch")
        }

        // The unfused path that observers see must agree as well.
        var observed = 0
        let unfused = try ForwardPass.reference(model, input: dataset.batch(records.prefix(4), normalization: model.normalization)) { _, _ in
            observed += 1
        }
        XCTAssertEqual(observed, model.nodes.count)
        XCTAssertLessThan(EngineFixtures.relativeError(unfused.data, Array(expected.prefix(40))), 1e-4)
    }

    func testResNet20() throws { try checkGolden("aka_resnet20") }
    func testResNet32() throws { try checkGolden("aka_resnet32") }
    func testResNet44() throws { try checkGolden("aka_resnet44") }
    func testResNet56() throws { try checkGolden("aka_resnet56") }
    func testNeuronMergingResNet56() throws { try checkGolden("nm_resnet56") }
}
