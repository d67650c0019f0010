import Foundation
import XCTest

/// `qsh FILE --shard i/N --json` in parallel processes, then `qsh merge`, as a cluster runs it.
final class ShardCommandLineTests: XCTestCase {
    var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("qsh-shards-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDown() {
        try? FileManager.default.removeItem(at: directory)
    }

    func path(_ name: String) -> String { directory.appendingPathComponent(name).path }

    func testParallelShardsMergeToTheSequentialTable() throws {
        let recipe = path("sweep.qs")
        try """
            load resnet20
            fold bn
            eval cifar10 limit=90 shard=auto
            sweep bits in 2, 3, 4, 8 {
                quantize layer 2.. bits=$bits
                eval cifar10 limit=50
            }
            """.write(toFile: recipe, atomically: true, encoding: .utf8)
        let sequential = try QshProcess.run([recipe, "--threads", "1", "--json", path("all.json")])
        XCTAssertEqual(sequential.status, 0, sequential.errors)

        // Three shards at once, as an array job runs them.
        let processes = try (0..<3).map { index -> Process in
            let process = Process()
            process.executableURL = QshProcess.executable
            process.arguments = [recipe, "--threads", "1", "--shard", "\(index)/3", "--json", path("shard-\(index).json")]
            process.environment = QshProcess.environment
            process.currentDirectoryURL = QshProcess.packageRoot
            FileManager.default.createFile(atPath: path("shard-\(index).log"), contents: nil)
            process.standardOutput = FileHandle.nullDevice
            process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: path("shard-\(index).log")))
            try process.run()
            return process
        }
        for (index, process) in processes.enumerated() {
            process.waitUntilExit()
            let log = (try? String(contentsOfFile: path("shard-\(index).log"), encoding: .utf8)) ?? ""
            XCTAssertEqual(process.terminationStatus, 0, log)
        }
        // Shard 1 of 3 runs item 1 (bits=3) only.
        let shardOne = try String(contentsOfFile: path("shard-1.json"), encoding: .utf8)
        XCTAssertTrue(shardOne.contains("\"shard\" : {\n      \"count\" : 3,\n      \"index\" : 1"), shardOne)

        let merged = try QshProcess.run(["merge", path("shard-2.json"), path("shard-0.json"), path("shard-1.json"), "--plot", path("sweep.svg")])
        XCTAssertEqual(merged.status, 0, merged.errors)
        let reference = try QshProcess.run(["merge", path("all.json")])
        XCTAssertEqual(reference.status, 0, reference.errors)
        XCTAssertEqual(merged.output, reference.output)
        XCTAssertEqual(merged.output.split(separator: "\n").count, 2 + 5, merged.output)
        XCTAssertTrue(merged.errors.contains("merged 3 of 3 shards of \(recipe): 4 sweep items, 5 evals"), merged.errors)
        XCTAssertTrue(FileManager.default.fileExists(atPath: path("sweep.svg")))

        // A missing shard and a truncated record are named, and the exit status says incomplete.
        let truncated = path("shard-1-cut.json")
        let bytes = try Data(contentsOf: URL(fileURLWithPath: path("shard-1.json")))
        try bytes.prefix(bytes.count / 2).write(to: URL(fileURLWithPath: truncated))
        let partial = try QshProcess.run(["merge", path("shard-0.json"), truncated])
        XCTAssertEqual(partial.status, 1)
        XCTAssertTrue(partial.errors.contains("INCOMPLETE"), partial.errors)
        XCTAssertTrue(partial.errors.contains("\(truncated): not a complete qsh run record"), partial.errors)
        XCTAssertTrue(partial.errors.contains("shards missing: 1, 2 of 3"), partial.errors)
    }

    func testBadShardArgumentsAreUsageErrors() throws {
        let recipe = path("r.qs")
        try "print 1\n".write(toFile: recipe, atomically: true, encoding: .utf8)
        for (argument, message) in [("4/4", "must be below the count"), ("a/b", "is not a shard"), ("1/0", "count must be 1")] {
            let result = try QshProcess.run([recipe, "--shard", argument])
            XCTAssertEqual(result.status, 2, "\(argument): \(result.errors)")
            XCTAssertTrue(result.errors.contains(message), "\(argument): \(result.errors)")
        }
        let noFiles = try QshProcess.run(["merge", path("nothing.json")])
        XCTAssertEqual(noFiles.status, 1)
        XCTAssertTrue(noFiles.errors.contains("nothing.json: cannot be read"), noFiles.errors)
    }
}
