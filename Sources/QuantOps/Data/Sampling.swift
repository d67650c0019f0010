extension Evaluation {
    /// `samples` record indices drawn without replacement by a seeded shuffle, in file order.
    ///
    /// Calibration must see every class, and files may be ordered by class (the test set is
    /// sorted; the training subset interleaves labels k mod 10), so any fixed stride can pick a
    /// subset of the classes. A seeded shuffle avoids that and stays reproducible.
    public static func sampleIndices(count: Int, samples: Int, seed: UInt64 = 0) -> [Int] {
        let wanted = min(max(0, samples), count)
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
