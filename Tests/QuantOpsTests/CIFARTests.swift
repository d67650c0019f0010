import Foundation
import QuantOps
import XCTest

final class CIFARTests: XCTestCase {
    func temporaryFile(_ bytes: [UInt8]) throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("cifar-\(UUID().uuidString).bin")
        try Data(bytes).write(to: url)
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url
    }

    func testReadsRecordsAndNormalizesPerChannel() throws {
        var record = [UInt8](repeating: 0, count: CIFAR10.recordSize * 2)
        record[0] = 7
        for i in 0..<3072 { record[1 + i] = UInt8(i / 1024 * 100) }  // planes 0, 100, 200
        record[3073] = 2
        let data = try CIFAR10(name: "two", files: [try temporaryFile(record)])
        XCTAssertEqual(data.labels, [7, 2])
        let normalization = Normalization(mean: [0.5, 0.5, 0.5], std: [0.25, 0.5, 1])
        let batch = data.batch([1, 0], normalization: normalization)
        XCTAssertEqual(batch.shape, [2, 3, 32, 32])
        XCTAssertEqual(batch.data[0], -2, accuracy: 1e-6)
        XCTAssertEqual(batch.data[3072], -2, accuracy: 1e-6)
        XCTAssertEqual(batch.data[3072 + 1024], (100 / 255 - 0.5) / 0.5, accuracy: 1e-6)
        XCTAssertEqual(batch.data[3072 + 2048 + 5], 200 / 255 - 0.5, accuracy: 1e-6)
    }

    func testRejectsTruncatedFilesAndBadLabelsNamingTheFile() throws {
        let truncated = try temporaryFile([UInt8](repeating: 0, count: 3000))
        XCTAssertThrowsError(try CIFAR10(name: "x", files: [truncated])) { error in
            XCTAssertTrue("\(error)".contains(truncated.lastPathComponent) && "\(error)".contains("3073"), "\(error)")
        }
        var badLabel = [UInt8](repeating: 0, count: 3073 * 2)
        badLabel[3073] = 10
        let file = try temporaryFile(badLabel)
        XCTAssertThrowsError(try CIFAR10(name: "x", files: [file])) { error in
            XCTAssertTrue("\(error)".contains("record 1") && "\(error)".contains(file.lastPathComponent), "\(error)")
        }
        XCTAssertThrowsError(try CIFAR10.load(named: "imagenet", from: EngineFixtures.dataDirectory))
        XCTAssertThrowsError(try CIFAR10.load(named: "cifar10", from: URL(fileURLWithPath: "/nonexistent"))) { error in
            XCTAssertTrue("\(error)".contains("/nonexistent/test_batch.bin"), "\(error)")
        }
    }

    func testSharedTestAndTrainingSets() throws {
        let test = try EngineFixtures.testSet()
        XCTAssertEqual(test.count, 10_000)
        XCTAssertEqual((0..<10).map { i in test.labels.filter { $0 == i }.count }, [Int](repeating: 1000, count: 10))
        let train = try CIFAR10.load(named: "cifar10-train", from: EngineFixtures.dataDirectory)
        XCTAssertEqual(train.count, 10_000)
        XCTAssertEqual(train.labels.prefix(12).map(Int.init), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1])
    }

    func testStrideThenLimit() {
        XCTAssertEqual(Evaluation.indices(count: 100, limit: 3, stride: 10), [0, 10, 20])
        XCTAssertEqual(Evaluation.indices(count: 25, limit: nil, stride: 10), [0, 10, 20])
        XCTAssertEqual(Evaluation.indices(count: 5, limit: 10, stride: 1), [0, 1, 2, 3, 4])
    }

    func testEvaluationCountsStopsAndReportsProgress() throws {
        let model = try EngineFixtures.zooModel("resnet20")
        let test = try EngineFixtures.testSet()
        var reported: [Int] = []
        let result = try Evaluation.run(model: model, dataset: test, limit: 50, stride: 100, batchSize: 20,
                                        progress: { done, total in reported.append(done); XCTAssertEqual(total, 50) })
        XCTAssertEqual(result.count, 50)
        XCTAssertEqual(reported, [20, 40, 50])
        XCTAssertGreaterThanOrEqual(result.top5, result.top1)
        XCTAssertGreaterThan(result.top1, 80)
        var polls = 0
        let stopped = try Evaluation.run(model: model, dataset: test, limit: 50, stride: 100, batchSize: 20,
                                         shouldStop: { polls += 1; return polls > 1 })
        XCTAssertTrue(stopped.stoppedEarly)
        XCTAssertEqual(stopped.count, 20)
    }
}
