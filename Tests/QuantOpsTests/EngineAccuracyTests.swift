import Foundation
import QuantOps
import XCTest

/// Top-1 over all 10,000 test images equals PyTorch's, with at most 2 predictions differing.
/// Seconds per model in a release build (`swift test -c release`); skipped in debug builds,
/// where a full pass takes minutes, unless QSH_FULL_EVAL=1.
final class EngineAccuracyTests: XCTestCase {
    func checkFullTestSet(_ name: String) throws {
        #if DEBUG
        if ProcessInfo.processInfo.environment["QSH_FULL_EVAL"] != "1" {
            throw XCTSkip("full test-set accuracy runs in release builds (swift test -c release) or with QSH_FULL_EVAL=1")
        }
        #endif
        let model = try EngineFixtures.zooModel(name)
        let reference = try XCTUnwrap(try ModelZoo.entry(named: name).referenceTop1)
        let result = try Evaluation.run(model: model, dataset: try EngineFixtures.testSet(), batchSize: 250)
        XCTAssertEqual(result.count, 10_000)
        XCTAssertEqual(result.top1, reference, accuracy: 0.02, "\(name): top-1 \(result.top1) vs PyTorch \(reference)")
    }

    func testResNet20() throws { try checkFullTestSet("resnet20") }
    func testResNet32() throws { try checkFullTestSet("resnet32") }
    func testResNet44() throws { try checkFullTestSet("resnet44") }
    func testResNet56() throws { try checkFullTestSet("resnet56") }
    func testNeuronMergingResNet56() throws { try checkFullTestSet("nm-resnet56") }
}
