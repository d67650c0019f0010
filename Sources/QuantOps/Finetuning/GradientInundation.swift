/// Gradient inundation (AIT, methods.md §5): each quantized layer's gradient is scaled by a
/// factor kappa chosen so that a fraction rho of the layer's integer weights would change at the
/// step. Without it, the KL gradient of a nearly converged student is too small to move any
/// weight across a rounding threshold, and training stalls in a few layers.
public enum GradientInundation {
    /// The outcome of one layer's search.
    public struct Search: Sendable, Equatable {
        public var kappa: Float
        /// Weights whose integer code the plain step `w - lr * kappa * g` changes.
        public var predictedChanges: Int
        /// The target `rho * numel`.
        public var target: Double
        /// How many step sizes were tried.
        public var evaluations: Int
    }

    /// The most bisection steps after the doubling phase.
    public static let bisectionSteps = 5
    /// Kappa's ceiling during warm-up, for stable early steps.
    public static let warmUpCap: Float = 128
    /// The ceiling after warm-up: only a layer whose gradient is (nearly) zero reaches it, and
    /// the doubling must stop somewhere.
    public static let ceiling: Float = 16_777_216

    /// Searches kappa for one layer under the plain step `w - lr * kappa * g` (the paper's Eq. 8):
    /// starting at 1, double until more than `rho * numel` codes would change (or `cap` is
    /// reached), then at most five bisections between kappa/2 and kappa toward the count nearest
    /// the target. A kappa of 1 that already changes enough is kept: inundation only ever
    /// enlarges gradients.
    public static func search(master: [Float], gradient: [Float], grid: WeightGrid, learningRate: Float,
                              rho: Double, cap: Float) -> Search {
        search(master: master, start: master, direction: gradient.map { learningRate * $0 }, grid: grid, rho: rho, cap: cap)
    }

    /// The same search for any update that is affine in kappa, `w' = start - kappa * direction`,
    /// such as a momentum step (`NesterovSGD.affineStep`), so that the count is of the weights
    /// the optimizer will really move across a threshold.
    public static func search(master: [Float], start: [Float], direction: [Float], grid: WeightGrid,
                              rho: Double, cap: Float) -> Search {
        let target = rho * Double(master.count)
        let codes = grid.codes(master)
        var evaluations = 0
        func changes(_ kappa: Float) -> Int {
            evaluations += 1
            var changed = 0
            for index in master.indices {
                let group = index / grid.groupSize
                if grid.code(start[index] - kappa * direction[index], group: group) != Int(codes[index]) { changed += 1 }
            }
            return changed
        }
        guard direction.contains(where: { $0 != 0 }), target > 0, cap >= 1 else {
            return Search(kappa: 1, predictedChanges: changes(1), target: target, evaluations: evaluations)
        }
        var kappa: Float = 1
        var count = changes(kappa)
        if Double(count) > target { return Search(kappa: 1, predictedChanges: count, target: target, evaluations: evaluations) }
        while Double(count) <= target && kappa < cap {
            kappa = min(kappa * 2, cap)
            count = changes(kappa)
        }
        guard Double(count) > target, kappa > 1 else {
            // The cap stopped the doubling: the capped step is the closest allowed.
            return Search(kappa: kappa, predictedChanges: count, target: target, evaluations: evaluations)
        }
        // Bisect between the last kappa below the target and the first above it.
        var low = kappa / 2, lowCount = changes(low)
        var high = kappa, highCount = count
        for _ in 0 ..< bisectionSteps {
            let middle = (low + high) / 2
            let middleCount = changes(middle)
            if Double(middleCount) > target {
                high = middle
                highCount = middleCount
            } else {
                low = middle
                lowCount = middleCount
            }
            if Double(highCount) - target < 1 { break }
        }
        // Eq. 10: the kappa whose count is nearest the target; a tie goes to the one above it.
        if abs(Double(lowCount) - target) < abs(Double(highCount) - target) {
            return Search(kappa: low, predictedChanges: lowCount, target: target, evaluations: evaluations)
        }
        return Search(kappa: high, predictedChanges: highCount, target: target, evaluations: evaluations)
    }
}
