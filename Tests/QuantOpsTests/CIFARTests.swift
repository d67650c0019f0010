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
        // The official record order: the published label sequences of both files begin so.
        XCTAssertEqual(train.labels.prefix(12).map(Int.init), [6, 9, 9, 4, 1, 1, 2, 7, 8, 3, 4, 7])
        XCTAssertEqual(test.labels.prefix(12).map(Int.init), [3, 8, 8, 0, 6, 6, 1, 6, 3, 1, 0, 9])
    }

    /// A folder holding the given training batches, each `records` images labelled by position.
    func trainingFolder(batches: [Int], records: Int) throws -> URL {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("cifar-train-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: folder) }
        for batch in batches {
            var bytes = [UInt8](repeating: 0, count: CIFAR10.recordSize * records)
            for record in 0..<records {
                bytes[record * CIFAR10.recordSize] = UInt8(record % 10)
                bytes[record * CIFAR10.recordSize + 1] = UInt8(batch)  // marks the batch in the first pixel
            }
            try Data(bytes).write(to: folder.appendingPathComponent("data_batch_\(batch).bin"))
        }
        return folder
    }

    func testTrainingSamplesAreTheSameWhicheverLaterBatchesArePresent() throws {
        let one = try CIFAR10.load(named: "cifar10-train", from: try trainingFolder(batches: [1], records: 40))
        let three = try CIFAR10.load(named: "cifar10-train", from: try trainingFolder(batches: [1, 2, 3], records: 40))
        XCTAssertEqual(one.count, 40)
        XCTAssertEqual(three.count, 120)
        XCTAssertEqual(three.fileRecordCounts, [40, 40, 40])
        XCTAssertEqual(one.missingFiles, ["data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin"])
        XCTAssertEqual(three.missingFiles, ["data_batch_4.bin", "data_batch_5.bin"])
        // A sample one batch can supply is the same draw whatever else is there.
        let fromOne = try one.sampleIndices(25, seed: 3)
        XCTAssertEqual(try three.sampleIndices(25, seed: 3), fromOne)
        XCTAssertEqual(fromOne.count, 25)
        XCTAssertEqual(Set(fromOne).count, 25)
        XCTAssertTrue(fromOne.allSatisfy { $0 < 40 })
        // The one-file draw is the plain seeded shuffle it always was.
        XCTAssertEqual(fromOne, Evaluation.sampleIndices(count: 40, samples: 25, seed: 3))
        // More than one batch: all of the first, then a draw from the second.
        let larger = try three.sampleIndices(55, seed: 3)
        XCTAssertEqual(larger.filter { $0 < 40 }, Array(0..<40))
        XCTAssertEqual(larger.filter { $0 >= 40 }.count, 15)
        XCTAssertTrue(larger.allSatisfy { $0 < 80 })
        // With batches missing, a sample that needs them names them instead of shrinking.
        XCTAssertThrowsError(try one.sampleIndices(41)) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("40 images here and 41 were requested"), text)
            XCTAssertTrue(text.contains("data_batch_2.bin, data_batch_3.bin, data_batch_4.bin, data_batch_5.bin are missing"), text)
        }
        XCTAssertThrowsError(try one.requireRecords(41))
        XCTAssertNoThrow(try one.requireRecords(40))
        // A complete data set (no missing files) gives every record when asked for more.
        let test = try CIFAR10(name: "t", labels: [UInt8](repeating: 1, count: 5), pixels: [UInt8](repeating: 0, count: 5 * 3072))
        XCTAssertEqual(try test.sampleIndices(9), [0, 1, 2, 3, 4])
    }

    func testShardsTileTheSelectedImagesInOrder() throws {
        let all = Evaluation.indices(count: 103, limit: nil, stride: 1)
        var joined: [Int] = []
        for index in 0..<4 { joined += Evaluation.indices(count: 103, limit: nil, stride: 1, part: try Shard(index: index, count: 4)) }
        XCTAssertEqual(joined, all)
        XCTAssertEqual(Evaluation.indices(count: 100, limit: 8, stride: 10, part: try Shard(parsing: "1/2")), [40, 50, 60, 70])
        XCTAssertEqual(try Shard(parsing: " 3 / 8 "), try Shard(index: 3, count: 8))
        for bad in ["4/4", "a/b", "-1/4", "1/0", "1", "1/2/3", ""] {
            XCTAssertThrowsError(try Shard(parsing: bad), bad)
        }
        XCTAssertEqual((0..<10).filter { (try! Shard(index: 1, count: 4)).owns(item: $0) }, [1, 5, 9])
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

    // MARK: CIFAR-100

    /// Records of the official CIFAR-100 layout: coarse label, fine label, 3072 pixel bytes.
    func cifar100Records(_ labels: [(coarse: UInt8, fine: UInt8)]) -> [UInt8] {
        var bytes: [UInt8] = []
        for (index, label) in labels.enumerated() {
            bytes += [label.coarse, label.fine] + [UInt8](repeating: UInt8(index * 10), count: 3072)
        }
        return bytes
    }

    func testCIFAR100ReadsFineLabelsThroughTheSharedReader() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("cifar100-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: folder) }
        try Data(cifar100Records([(3, 99), (19, 0), (0, 42)])).write(to: folder.appendingPathComponent("test.bin"))
        try Data(cifar100Records([(1, 7)])).write(to: folder.appendingPathComponent("train.bin"))
        XCTAssertEqual(CIFAR100.recordSize, 3074)
        let test = try CIFAR100.load(named: "cifar100", from: folder)
        XCTAssertEqual(test.count, 3)
        XCTAssertEqual(test.classCount, 100)
        XCTAssertEqual(test.labels(of: 0..<3), [99, 0, 42])
        let batch = test.batch([2, 1], normalization: Normalization(mean: [0, 0, 0], std: [1, 1, 1]))
        XCTAssertEqual(batch.shape, [2, 3, 32, 32])
        XCTAssertEqual(batch.data[0], 20 / 255, accuracy: 1e-6)
        XCTAssertEqual(batch.data[3072], 10 / 255, accuracy: 1e-6)
        let train = try CIFAR100.load(named: "cifar100-train", from: folder)
        XCTAssertEqual(train.labels, [7])
        XCTAssertEqual(try Fetcher.locateCIFAR(CIFAR100Layout.self, in: [folder], allowDownload: false), folder)
    }

    func testCIFAR100RejectsTruncatedFilesAndCIFAR10Files() throws {
        let truncated = try temporaryFile(Array(cifar100Records([(0, 1), (0, 2)]).dropLast(10)))
        XCTAssertThrowsError(try CIFAR100(name: "x", files: [truncated])) { error in
            let text = "\(error)"
            XCTAssert(text.contains(truncated.path) && text.contains("3074-byte record") && text.contains("CIFAR-100"), text)
        }
        // CIFAR-10 records read as CIFAR-100: the first pixel byte is taken as the fine label.
        var cifar10 = [UInt8](repeating: 0, count: 2 * CIFAR100.recordSize)
        cifar10[1] = 200
        XCTAssertThrowsError(try CIFAR100(name: "x", files: [try temporaryFile(cifar10)])) { error in
            XCTAssert("\(error)".contains("label 200"), "\(error)")
        }
        XCTAssertThrowsError(try CIFAR100.load(named: "cifar100", from: URL(fileURLWithPath: "/nonexistent"))) { error in
            XCTAssert("\(error)".contains("cifar-100-binary.tar.gz"), "\(error)")
        }
    }
}
