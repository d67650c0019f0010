import Foundation

public struct EvaluationResult: Sendable, Equatable {
    /// Percent of images whose label is the top prediction.
    public var top1: Double
    /// Percent of images whose label is among the five highest logits.
    public var top5: Double
    public var count: Int
    /// Images whose label is the top prediction, and among the top five: exact counts, so
    /// that evaluations of parts of a data set add up to the evaluation of the whole.
    public var top1Correct: Int
    public var top5Correct: Int
    public var seconds: Double
    public var imagesPerSecond: Double
    /// The predicted class of each evaluated image, in evaluation order.
    public var predictions: [Int]
    /// Whether `shouldStop` ended the run early; the numbers cover the images done.
    public var stoppedEarly: Bool
}

public enum Evaluation {
    /// The record indices an evaluation visits: every `stride`-th record, then at most `limit`,
    /// then, with `part`, that shard's contiguous share of them.
    public static func indices(count: Int, limit: Int?, stride: Int, part: Shard? = nil) -> [Int] {
        var selected = Array(Swift.stride(from: 0, to: count, by: max(1, stride)))
        if let limit { selected = Array(selected.prefix(max(0, limit))) }
        guard let part else { return selected }
        return Array(part.part(of: selected))
    }

    /// Classifies the selected images in batches. `progress(done, total)` is called after
    /// each batch and `shouldStop` is polled before each, so Ctrl-C ends a run cleanly.
    /// `logits` receives each batch's logits (rows in evaluation order). The next batch is
    /// prepared on a background queue while the model runs on the current one.
    public static func run(model: Model, dataset: any LabeledImages, limit: Int? = nil, stride: Int = 1, part: Shard? = nil,
                           batchSize: Int = 200, arithmetic: Arithmetic = .float,
                           progress: ((Int, Int) -> Void)? = nil,
                           shouldStop: (() -> Bool)? = nil, logits logitsSink: ((Tensor) -> Void)? = nil) throws -> EvaluationResult {
        let selected = indices(count: dataset.count, limit: limit, stride: stride, part: part)
        let batchSize = max(1, batchSize)
        let start = Date()
        var top1Hits = 0, top5Hits = 0
        var predictions: [Int] = []
        predictions.reserveCapacity(selected.count)
        var stoppedEarly = false
        var done = 0
        // Primitives and buffers are prepared once and reused for every batch, and the
        // primitives for the next evaluation of the same model.
        let compiled = try CompiledModel.reusing(model, arithmetic: arithmetic)
        defer { compiled.park() }
        let chunks = Swift.stride(from: 0, to: selected.count, by: batchSize).map {
            Array(selected[$0..<min($0 + batchSize, selected.count)])
        }
        let normalization = model.normalization
        func prefetch(_ position: Int) -> Prefetched<Tensor>? {
            guard position < chunks.count else { return nil }
            let chunk = chunks[position]
            return Prefetched { try dataset.batch(chunk, normalization: normalization) }
        }
        var next = prefetch(0)
        // A run that stops early still waits for the batch being prepared, so that no work
        // outlives the call.
        defer { _ = try? next?.value() }
        for position in chunks.indices {
            if shouldStop?() == true {
                stoppedEarly = true
                break
            }
            let chunk = chunks[position]
            let pending = next
            next = nil
            let input = try pending!.value()
            next = prefetch(position + 1)
            let logits = try compiled.logits(input)
            logitsSink?(logits)
            let classes = logits.shape[1]
            for (row, image) in chunk.enumerated() {
                let scores = logits.data[(row * classes)..<((row + 1) * classes)]
                let label = dataset.label(of: image)
                let ranking = topIndices(scores, count: min(5, classes))
                predictions.append(ranking[0])
                if ranking[0] == label { top1Hits += 1 }
                if ranking.contains(label) { top5Hits += 1 }
            }
            done += chunk.count
            progress?(done, selected.count)
        }
        let seconds = Date().timeIntervalSince(start)
        let total = max(1, predictions.count)
        return EvaluationResult(top1: 100 * Double(top1Hits) / Double(total), top5: 100 * Double(top5Hits) / Double(total),
                                count: predictions.count, top1Correct: top1Hits, top5Correct: top5Hits, seconds: seconds,
                                imagesPerSecond: seconds > 0 ? Double(predictions.count) / seconds : 0,
                                predictions: predictions, stoppedEarly: stoppedEarly)
    }

    /// Positions of the largest values, highest first; ties go to the lower index, as argmax does.
    /// One pass that keeps the best `count` so far, not a sort of all classes: with 1,000
    /// ImageNet classes a sort per image was a visible part of an evaluation's time.
    static func topIndices(_ scores: ArraySlice<Float>, count: Int) -> [Int] {
        var best: [Int] = []
        best.reserveCapacity(count + 1)
        for index in scores.indices {
            let score = scores[index]
            // Scanning in index order, a later index only wins a tie-free comparison.
            guard best.count < count || score > scores[best[best.count - 1]] else { continue }
            var position = best.count
            while position > 0 && score > scores[best[position - 1]] { position -= 1 }
            best.insert(index, at: position)
            if best.count > count { best.removeLast() }
        }
        return best.map { $0 - scores.startIndex }
    }
}
