extension Evaluation {
    /// `samples` record indices drawn without replacement by a seeded shuffle, in file order.
    ///
    /// A seeded shuffle rather than a stride, so that the draw sees every class whatever the
    /// record order, and stays reproducible.
    public static func sampleIndices(count: Int, samples: Int, seed: UInt64 = 0) -> [Int] {
        sampleIndices(fileRecordCounts: [count], samples: samples, seed: seed)
    }

    /// The same draw over a data set read from several files: the first file supplies up to all
    /// of its records before the next is touched, each file with its own seeded shuffle. A sample
    /// of 1,024 training images is then the same for a user with one training batch as for one
    /// with all five.
    public static func sampleIndices(fileRecordCounts: [Int], samples: Int, seed: UInt64 = 0) -> [Int] {
        var remaining = max(0, samples)
        var chosen: [Int] = []
        var offset = 0
        for (file, count) in fileRecordCounts.enumerated() where remaining > 0 {
            let wanted = min(remaining, count)
            // File 0 keeps the seed itself, so one-file data sets draw as they always have.
            let fileSeed = seed &+ UInt64(file) &* 0x9E37_79B9_7F4A_7C15
            chosen += shuffledPrefix(count: count, wanted: wanted, seed: fileSeed).map { $0 + offset }
            remaining -= wanted
            offset += count
        }
        return chosen
    }

    /// The first `wanted` positions of a seeded Fisher-Yates shuffle of `0..<count`, sorted.
    private static func shuffledPrefix(count: Int, wanted: Int, seed: UInt64) -> [Int] {
        guard wanted < count else { return Array(0..<count) }
        var generator = SeededGenerator(seed: seed)
        var indices = Array(0..<count)
        for position in 0..<wanted {
            let pick = position + Int(generator.next() % UInt64(count - position))
            indices.swapAt(position, pick)
        }
        return indices.prefix(wanted).sorted()
    }
}
