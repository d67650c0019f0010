import Foundation
import XCTest
@testable import QuantOps

/// Layer-wise analysis and sensitivity point at a layer that was broken on purpose.
final class AnalysisTests: XCTestCase {
    static func brokenModel(layer broken: Int) throws -> (float: Model, quantized: Model, images: Tensor) {
        var float = try QuantizerFixtures.zooModel("resnet20")
        try ModelTransforms.foldBatchNorm(&float)
        var quantized = float
        try ModelTransforms.quantize(&quantized, layers: Array(1...20).filter { $0 != broken },
                                     with: .uniform(bits: 8, scheme: .symmetric, granularity: .channel))
        try ModelTransforms.quantize(&quantized, layers: [broken], with: .uniform(bits: 2, scheme: .symmetric, granularity: .tensor))
        let images = try QuantizerFixtures.testImages(40, normalization: float.normalization)
        return (float, quantized, images)
    }

    func testAnalysisFindsAnInjectedBrokenLayer() throws {
        let (float, quantized, images) = try Self.brokenModel(layer: 8)
        var withActivations = quantized
        try ActivationQuantization.quantize(&withActivations, with: ActivationQuantizer(bits: 8, scheme: .asymmetric))
        let statistics = try XCTUnwrap(ActivationCalibration.collect(withActivations, batchCount: 1) { _ in images })
        try ActivationCalibration.apply(.minMax, statistics: statistics, to: &withActivations)
        let analysis = try XCTUnwrap(LayerAnalysis.compare(reference: float, quantized: withActivations, batchCount: 2) { index in
            Tensor(shape: [20, 3, 32, 32], data: Array(images.data[(index * 20 * 3072)..<((index + 1) * 20 * 3072)]))
        })
        XCTAssertEqual(analysis.images, 40)
        XCTAssertEqual(analysis.rows.map(\.layer), Array(1...20))
        let harmful = try XCTUnwrap(analysis.mostHarmful)
        XCTAssertEqual(analysis.rows[harmful].layer, 8)
        for row in analysis.rows where row.layer < 8 {
            XCTAssertGreaterThan(row.sqnr, 25, "layer \(row.layer) at W8A8")
        }
        XCTAssertLessThan(analysis.rows[7].sqnr, 15)
        let worst = try XCTUnwrap(analysis.worst)
        XCTAssertGreaterThanOrEqual(analysis.rows[worst].layer, 8)
        // SQNR and RMSE agree with each other: RMSE^2 = mean f^2 / 10^(SQNR/10) needs the signal, so check ordering only.
        XCTAssertGreaterThan(analysis.rows[7].rmse, analysis.rows[6].rmse)
    }

    func testIdenticalModelsHaveNoError() throws {
        var float = try QuantizerFixtures.zooModel("resnet20")
        try ModelTransforms.foldBatchNorm(&float)
        let images = try QuantizerFixtures.testImages(4, normalization: float.normalization)
        let analysis = try XCTUnwrap(LayerAnalysis.compare(reference: float, quantized: float, batchCount: 1) { _ in images })
        XCTAssertTrue(analysis.rows.allSatisfy { $0.rmse == 0 && $0.sqnr == .infinity })
    }

    func testSensitivityPointsAtTheBrokenLayer() throws {
        let (float, quantized, all) = try Self.brokenModel(layer: 5)
        // Every other image of the 40: 20 images spread over all classes keep the debug run short.
        let picked = Array(Swift.stride(from: 0, to: 40, by: 2))
        let images = Tensor(shape: [20, 3, 32, 32], data: picked.flatMap { all.data[($0 * 3072)..<(($0 + 1) * 3072)] })
        let allLabels = try QuantizerFixtures.testLabels(40)
        let labels = picked.map { allLabels[$0] }
        let report = try XCTUnwrap(Sensitivity.run(reference: float, quantized: quantized, images: images, labels: labels))
        XCTAssertEqual(report.layers.count, 20)
        XCTAssertEqual(report.float.sqnr, .infinity)
        let keptBest = try XCTUnwrap(report.layers.max { $0.keptFloat.sqnr < $1.keptFloat.sqnr })
        XCTAssertEqual(keptBest.layer, 5)
        let aloneWorst = try XCTUnwrap(report.layers.min { $0.alone.sqnr < $1.alone.sqnr })
        XCTAssertEqual(aloneWorst.layer, 5)
        XCTAssertGreaterThan(report.layers[4].keptFloat.sqnr, report.quantized.sqnr + 10)
        if let first = report.recoveries().first { XCTAssertEqual(first.layer, 5) }
    }
}

extension QuantizerFixtures {
    /// The labels of the images `testImages(count, ...)` returns.
    static func testLabels(_ count: Int) throws -> [Int] {
        let file = dataDirectory.appendingPathComponent("test_batch.bin")
        guard FileManager.default.fileExists(atPath: file.path) else { throw XCTSkip("CIFAR-10 test batch not found") }
        let data = try CIFAR10(name: "cifar10", files: [file])
        return Array(Swift.stride(from: 0, to: data.count, by: data.count / count).prefix(count)).map { Int(data.labels[$0]) }
    }
}
