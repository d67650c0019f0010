import Foundation
import QuantOps

/// A machine-readable record of a session: what ran, on which files, with what results.
///
/// Everything that varies between two runs of the same recipe on the same machine lives under
/// `timings`; the rest is identical, so reports can be compared with `timings` removed.
public struct RunReport: Codable, Sendable {
    public struct Tool: Codable, Sendable {
        public var name = "qsh"
        public var version: String
        /// `git rev-parse HEAD` of the package the executable was built from, or "unknown".
        public var gitCommit: String
    }

    public struct Recipe: Codable, Sendable {
        public var name: String
        public var text: String
        public var sha256: String
    }

    public struct Evaluation: Codable, Sendable {
        public var index: Int
        public var state: String
        public var dataset: String
        public var images: Int
        public var top1: Double
        public var top5: Double
        public var variables: [String: String]
        public var modelSHA256: String?
        /// Exact counts behind top1/top5, so that `qsh merge` adds parts of a data set exactly.
        public var top1Correct: Int?
        public var top5Correct: Int?
        /// The part of the data evaluated, when only a part.
        public var dataShard: Shard?
        /// The sweep item the eval ran in, if any, and how many items had started before it.
        public var sweepItem: Int?
        public var sweepItemsBefore: Int?
    }

    /// What `--shard` and the recipe's sweeps did in this process.
    public struct Sweep: Codable, Sendable {
        public struct Item: Codable, Sendable, Equatable {
            public var index: Int
            public var variables: [String: String]
            /// The item's error as printed; nil when it succeeded.
            public var error: String?
        }

        /// Nil for an unsharded run.
        public var shard: Shard?
        /// The recipe that was sharded, by name and SHA-256 of its text: shards must agree.
        public var recipe: String?
        public var recipeSHA256: String?
        /// Items over all sweeps of the recipe, run here or not.
        public var itemCount: Int
        /// The items this process ran.
        public var items: [Item]
        public var dataSharded: Bool
    }

    public struct FileChecksum: Codable, Sendable, Hashable {
        /// A zoo model name, or a data file relative to its data directory.
        public var name: String
        public var sha256: String
    }

    public struct Timings: Codable, Sendable {
        public var startedAt: String
        public var totalSeconds: Double
        /// Seconds per eval, in the order of `evaluations`.
        public var evaluationSeconds: [Double]
    }

    public var format = RunReport.formatName
    public static let formatName = "qsh-run-report-1"
    public var tool: Tool
    /// Recipe files the session ran or sourced, by name.
    public var recipes: [Recipe]
    /// The statements that ran, in order, in canonical form.
    public var statements: [String]
    public var overrides: [String: String]
    public var threads: Int
    public var seeds: [String: UInt64]
    public var models: [FileChecksum]
    public var data: [FileChecksum]
    public var evaluations: [Evaluation]
    /// Named results at the end, as `expect` sees them.
    public var results: [String: Double]
    /// The process exit status, when the report is written after a run (`qsh FILE --json`).
    public var exitStatus: Int?
    public var sweep: Sweep?
    public var timings: Timings

    public init(session: Session, exitStatus: ExitStatus? = nil) {
        tool = Tool(version: QshVersion.string, gitCommit: Self.gitCommit())
        recipes = session.sources.values
            .filter { !$0.name.hasPrefix("<input ") }
            .sorted { $0.name < $1.name }
            .map { Recipe(name: $0.name, text: $0.text, sha256: Checksum.sha256(Data($0.text.utf8))) }
        statements = session.history
        overrides = Dictionary(uniqueKeysWithValues: session.pinnedVariables.compactMap { name in
            session.variables[name].map { (name, $0.description) }
        })
        threads = session.settings.threads
        seeds = session.seeds
        models = Self.modelChecksums(session)
        data = Self.dataChecksums(session)
        evaluations = session.evaluations.enumerated().map { index, record in
            Evaluation(index: index + 1, state: record.state, dataset: record.dataset, images: record.images,
                       top1: record.top1, top5: record.top5,
                       variables: record.variables.mapValues(\.description), modelSHA256: record.modelChecksum,
                       top1Correct: record.top1Correct, top5Correct: record.top5Correct, dataShard: record.dataShard,
                       sweepItem: record.sweepItem, sweepItemsBefore: record.sweepItemsBefore)
        }
        results = session.values
        self.exitStatus = exitStatus.map { Int($0.rawValue) }
        let main = session.mainRecipe.flatMap { session.sources[$0] }
        sweep = Sweep(shard: session.sweep.shard, recipe: main?.name,
                      recipeSHA256: main.map { Checksum.sha256(Data($0.text.utf8)) },
                      itemCount: session.sweep.itemsStarted,
                      items: session.sweep.items.map { Sweep.Item(index: $0.index, variables: $0.variables, error: $0.error) },
                      dataSharded: session.sweep.dataSharded)
        timings = Timings(startedAt: ISO8601DateFormatter().string(from: session.startedAt),
                          totalSeconds: Date().timeIntervalSince(session.startedAt),
                          evaluationSeconds: session.evaluations.map(\.seconds))
    }

    public func encoded() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        var data = try encoder.encode(self)
        data.append(0x0A)
        return data
    }

    /// Writes the whole file or nothing.
    public func write(to path: String) throws {
        do {
            try AtomicFile.write(encoded(), to: URL(fileURLWithPath: path))
        } catch {
            let reason = (error as? AtomicFile.Failure)?.reason ?? error.localizedDescription
            throw CommandError("cannot write the report '\(path)': \(reason)",
                               hint: "check that the directory exists and is writable")
        }
    }

    // MARK: Provenance

    /// Every checkpoint a model of the session came from, by zoo name.
    static func modelChecksums(_ session: Session) -> [FileChecksum] {
        let states = [session.loaded, session.current].compactMap { $0 } + session.models.undoStack.compactMap { $0 }
            + Array(session.models.snapshots.values)
        var seen = Set<FileChecksum>()
        for state in states {
            if let checksum = state.checksum { seen.insert(FileChecksum(name: state.origin, sha256: checksum)) }
        }
        return seen.sorted { ($0.name, $0.sha256) < ($1.name, $1.sha256) }
    }

    /// The files behind every standard data set the session read.
    static func dataChecksums(_ session: Session) -> [FileChecksum] {
        standardFileChecksums(CIFAR10Layout.self, session) + standardFileChecksums(CIFAR100Layout.self, session)
    }

    private static func standardFileChecksums<Layout: CIFARLayout>(_ layout: Layout.Type, _ session: Session) -> [FileChecksum] {
        let names = session.datasets.keys.filter { CIFARBinary<Layout>.knownNames.contains($0) }
        guard !names.isEmpty,
              let folder = try? Fetcher.locateCIFAR(layout, in: session.dataDirectories, allowDownload: false) else { return [] }
        var files = Set<String>()
        for name in names {
            (name == Layout.testName ? Layout.testFiles : Layout.trainingFiles).forEach { files.insert($0) }
        }
        return files.sorted().compactMap { file in
            let url = folder.appendingPathComponent(file)
            guard let digest = try? Checksum.sha256(of: url) else { return nil }
            return FileChecksum(name: folder.lastPathComponent + "/" + file, sha256: digest)
        }
    }

    /// The commit of the package the running executable was built in, found by walking up from it.
    static func gitCommit() -> String {
        guard let executable = Bundle.main.executableURL?.resolvingSymlinksInPath() else { return "unknown" }
        var directory = executable.deletingLastPathComponent()
        for _ in 0..<8 {
            if FileManager.default.fileExists(atPath: directory.appendingPathComponent("Package.swift").path) {
                return runGit(["-C", directory.path, "rev-parse", "HEAD"]) ?? "unknown"
            }
            directory = directory.deletingLastPathComponent()
        }
        return "unknown"
    }

    private static func runGit(_ arguments: [String]) -> String? {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["git"] + arguments
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        do { try process.run() } catch { return nil }
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { return nil }
        let commit = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        return commit.count == 40 ? commit : nil
    }
}
