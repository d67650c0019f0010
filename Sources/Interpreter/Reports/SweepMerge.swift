import Foundation
import QuantOps

/// The run records of a sharded recipe (`qsh FILE --shard i/N --json ...`), put back together:
/// the evaluations of every sweep item in item order, and data-set parts added up exactly.
///
/// Shards must come from the same recipe text, shard count and `--set` overrides; anything
/// else is refused. Missing shards, failed items and unreadable files do not stop the merge:
/// they are listed in `problems`, and the result is then marked incomplete.
public struct SweepMerge {
    public struct Input {
        public var path: String
        public var contents: Data

        public init(path: String, contents: Data) {
            self.path = path
            self.contents = contents
        }
    }

    /// Every evaluation of the whole run, in the order a sequential run makes them.
    public private(set) var evaluations: [EvaluationRecord] = []
    /// What keeps the merge from being complete, one line each.
    public private(set) var problems: [String] = []
    public private(set) var shardCount = 1
    public private(set) var recipe = "?"
    public private(set) var itemCount = 0
    public private(set) var shardsFound: [Int] = []

    public var isComplete: Bool { problems.isEmpty }

    public init(_ inputs: [Input]) throws(CommandError) {
        var reports: [(path: String, report: RunReport, shard: Shard)] = []
        for input in inputs {
            do {
                let report = try JSONDecoder().decode(RunReport.self, from: input.contents)
                guard report.format == RunReport.formatName else {
                    problems.append("\(input.path): format '\(report.format)' is not \(RunReport.formatName); it was written by another qsh version")
                    continue
                }
                let shard = try report.sweep?.shard ?? Shard(index: 0, count: 1)
                if let flaw = Self.flaw(in: report) {
                    problems.append("\(input.path): \(flaw); the record is damaged, re-run its shard")
                    continue
                }
                reports.append((input.path, report, shard))
            } catch {
                problems.append("\(input.path): not a complete qsh run record (\(Self.reason(error))); re-run its shard")
            }
        }
        guard let first = reports.first else {
            throw CommandError("no readable run record among \(inputs.count) file\(inputs.count == 1 ? "" : "s")"
                               + (problems.isEmpty ? "" : ":\n  " + problems.joined(separator: "\n  ")),
                               hint: "give the --json files that 'qsh FILE --shard i/N --json FILE' wrote")
        }
        try Self.checkSameRun(reports.map { ($0.path, $0.report, $0.shard) })
        shardCount = first.shard.count
        recipe = first.report.sweep?.recipe ?? first.report.recipes.first?.name ?? "?"
        itemCount = first.report.sweep?.itemCount ?? 0

        var byIndex: [Int: (path: String, report: RunReport)] = [:]
        for entry in reports {
            if let earlier = byIndex[entry.shard.index] {
                throw CommandError("shard \(entry.shard) appears twice: \(earlier.path) and \(entry.path)",
                                   hint: "keep one run record per shard")
            }
            byIndex[entry.shard.index] = (entry.path, entry.report)
        }
        shardsFound = byIndex.keys.sorted()
        let missing = (0..<shardCount).filter { byIndex[$0] == nil }
        if !missing.isEmpty {
            problems.append("shard\(missing.count == 1 ? "" : "s") missing: \(missing.map(String.init).joined(separator: ", ")) of \(shardCount)"
                            + "; re-run \(missing.count == 1 ? "it" : "them") with --shard \(missing[0])/\(shardCount)\(missing.count == 1 ? "" : " ...")")
        }
        for index in shardsFound {
            let (path, report) = byIndex[index]!
            problems += Self.itemProblems(report, shard: try! Shard(index: index, count: shardCount), path: path, itemCount: itemCount)
        }
        evaluations = mergeEvaluations(byIndex)
    }

    /// Numbers no run writes: a record with them was damaged or edited, and is not merged.
    static func flaw(in report: RunReport) -> String? {
        if let count = report.sweep?.itemCount, !(0...maximumItems).contains(count) {
            return "itemCount \(count) is outside 0...\(maximumItems)"
        }
        for item in report.sweep?.items ?? [] where !(0..<(report.sweep?.itemCount ?? 0)).contains(item.index) {
            return "sweep item \(item.index) is outside the \(report.sweep?.itemCount ?? 0) items"
        }
        for evaluation in report.evaluations {
            guard evaluation.images >= 0,
                  (evaluation.top1Correct ?? 0) >= 0, (evaluation.top1Correct ?? 0) <= evaluation.images,
                  (evaluation.top5Correct ?? 0) >= 0, (evaluation.top5Correct ?? 0) <= evaluation.images,
                  (0...100).contains(evaluation.top1), (0...100).contains(evaluation.top5),
                  (evaluation.sweepItemsBefore ?? 0) >= 0, (evaluation.sweepItem ?? 0) >= 0 else {
                return "evaluation \(evaluation.index) has impossible counts"
            }
        }
        return nil
    }

    /// More sweep items than a recipe could list by hand or by range in reasonable time.
    static let maximumItems = 1_000_000

    private static func reason(_ error: Error) -> String {
        switch error {
        case DecodingError.dataCorrupted(let context): return context.underlyingError.map { "\($0.localizedDescription)" } ?? context.debugDescription
        case DecodingError.keyNotFound(let key, _): return "no '\(key.stringValue)' field"
        case DecodingError.typeMismatch(_, let context), DecodingError.valueNotFound(_, let context):
            return "wrong type at '\(context.codingPath.map(\.stringValue).joined(separator: "."))'"
        case let error as ShardError: return error.description
        default: return error.localizedDescription
        }
    }

    /// Shards of one run share the recipe text, the shard count and the overrides.
    private static func checkSameRun(_ reports: [(String, RunReport, Shard)]) throws(CommandError) {
        let (firstPath, first, firstShard) = reports[0]
        for (path, report, shard) in reports.dropFirst() {
            if report.sweep?.recipeSHA256 != first.sweep?.recipeSHA256 {
                throw CommandError("\(path) comes from another recipe than \(firstPath) "
                                   + "(\(report.sweep?.recipe ?? "?") sha256 \(prefix(report.sweep?.recipeSHA256)) against "
                                   + "\(first.sweep?.recipe ?? "?") sha256 \(prefix(first.sweep?.recipeSHA256)))",
                                   hint: "merge only the shards of one run of one recipe")
            }
            if shard.count != firstShard.count {
                throw CommandError("\(path) is shard \(shard) but \(firstPath) is shard \(firstShard): the shard counts differ",
                                   hint: "merge only shards split the same number of ways")
            }
            if report.overrides != first.overrides {
                throw CommandError("\(path) ran with --set \(describe(report.overrides)) but \(firstPath) with \(describe(first.overrides))",
                                   hint: "shards of one run must use the same --set values")
            }
        }
    }

    private static func prefix(_ digest: String?) -> String { digest.map { String($0.prefix(12)) } ?? "unknown" }

    private static func describe(_ overrides: [String: String]) -> String {
        overrides.isEmpty ? "nothing" : overrides.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
    }

    /// Items the shard should have run and did not, items that failed, and a failure outside the sweep.
    private static func itemProblems(_ report: RunReport, shard: Shard, path: String, itemCount: Int) -> [String] {
        var problems: [String] = []
        let items = report.sweep?.items ?? []
        let ran = Set(items.map(\.index))
        for item in items {
            guard let error = item.error else { continue }
            let values = item.variables.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
            let firstLine = error.split(separator: "\n").first.map(String.init) ?? error
            problems.append("item \(item.index) (\(values)) failed in shard \(shard): \(firstLine)")
        }
        let notRun = (0..<itemCount).filter { shard.owns(item: $0) && !ran.contains($0) }
        if !notRun.isEmpty {
            problems.append("shard \(shard) (\(path)) stopped before item\(notRun.count == 1 ? "" : "s") \(notRun.map(String.init).joined(separator: ", ")); re-run it with --shard \(shard)")
        } else if let status = report.exitStatus, status != 0, items.allSatisfy({ $0.error == nil }) {
            problems.append("shard \(shard) (\(path)) ended with exit status \(status) outside the sweep; re-run it with --shard \(shard)")
        }
        return problems
    }

    /// Item evaluations come from the shard that ran the item. Evaluations outside the sweeps ran
    /// in every shard: the same one appears once, and parts of a data set are added up.
    private mutating func mergeEvaluations(_ byIndex: [Int: (path: String, report: RunReport)]) -> [EvaluationRecord] {
        struct Key: Hashable, Comparable {
            var position: Int, insideItem: Int, ordinal: Int
            static func < (a: Key, b: Key) -> Bool {
                (a.position, a.insideItem, a.ordinal) < (b.position, b.insideItem, b.ordinal)
            }
        }
        var groups: [Key: [RunReport.Evaluation]] = [:]
        for index in byIndex.keys.sorted() {
            var ordinals: [String: Int] = [:]
            for evaluation in byIndex[index]!.report.evaluations {
                let key: Key
                if let item = evaluation.sweepItem {
                    let ordinal = ordinals["item \(item)", default: 0]
                    ordinals["item \(item)"] = ordinal + 1
                    key = Key(position: item, insideItem: 1, ordinal: ordinal)
                } else {
                    let before = evaluation.sweepItemsBefore ?? 0
                    let ordinal = ordinals["before \(before)", default: 0]
                    ordinals["before \(before)"] = ordinal + 1
                    key = Key(position: before, insideItem: 0, ordinal: ordinal)
                }
                groups[key, default: []].append(evaluation)
            }
        }
        var merged: [EvaluationRecord] = []
        for key in groups.keys.sorted() {
            let group = groups[key]!
            if group[0].dataShard != nil {
                if let record = addParts(group) { merged.append(record) }
            } else {
                merged.append(Self.record(group[0]))
            }
        }
        return merged
    }

    /// One evaluation from its parts: exact counts added, then the percentages of the sums.
    private mutating func addParts(_ parts: [RunReport.Evaluation]) -> EvaluationRecord? {
        let first = parts[0]
        let covered = Set(parts.compactMap { $0.dataShard?.index })
        let count = first.dataShard?.count ?? 1
        guard parts.allSatisfy({ $0.top1Correct != nil && $0.top5Correct != nil }) else {
            problems.append("eval of \(first.state) on \(first.dataset): a part has no exact counts (written by an older qsh)")
            return nil
        }
        if covered.count != count || parts.count != count {
            let missing = (0..<count).filter { !covered.contains($0) }
            problems.append("eval of \(first.state) on \(first.dataset) is missing data part\(missing.count == 1 ? "" : "s") "
                            + "\(missing.map { "\($0)/\(count)" }.joined(separator: ", ")); its merged row covers only the parts present")
        }
        let images = parts.reduce(0) { $0 + $1.images }
        let top1Correct = parts.reduce(0) { $0 + $1.top1Correct! }
        let top5Correct = parts.reduce(0) { $0 + $1.top5Correct! }
        var record = Self.record(first)
        record.images = images
        // The same arithmetic as a single eval, so that the merged numbers equal it exactly.
        record.top1 = 100 * Double(top1Correct) / Double(max(1, images))
        record.top5 = 100 * Double(top5Correct) / Double(max(1, images))
        record.top1Correct = top1Correct
        record.top5Correct = top5Correct
        record.dataShard = nil
        return record
    }

    private static func record(_ evaluation: RunReport.Evaluation) -> EvaluationRecord {
        var record = EvaluationRecord(state: evaluation.state, dataset: evaluation.dataset, images: evaluation.images,
                                      top1: evaluation.top1, top5: evaluation.top5, seconds: 0,
                                      variables: evaluation.variables.mapValues(RuntimeValue.parsingReported),
                                      modelChecksum: evaluation.modelSHA256,
                                      top1Correct: evaluation.top1Correct, top5Correct: evaluation.top5Correct,
                                      dataShard: evaluation.dataShard)
        record.sweepItem = evaluation.sweepItem
        record.sweepItemsBefore = evaluation.sweepItemsBefore ?? 0
        return record
    }
}

extension RuntimeValue {
    /// A variable's value as a run record wrote it: numbers come back as numbers, for plotting.
    static func parsingReported(_ text: String) -> RuntimeValue {
        if let integer = Int(text) { return .integer(integer) }
        if let number = Double(text), number.isFinite { return .number(number) }
        if text == "true" || text == "false" { return .boolean(text == "true") }
        return .string(text)
    }
}

extension SweepMerge {
    /// The `results` table of the whole run.
    public var resultsTable: String {
        evaluations.isEmpty ? "no evaluations in these run records" : ExploreCommands.resultsTable(evaluations)
    }

    /// Writes the `plot results` figure of the whole run.
    public func plot(to path: String) throws {
        try ResultsFigure(evaluations, x: nil, topFive: false).render().write(to: path)
    }
}
