import QuantOps

/// Deterministic test values in [-1, 1) from the library's seeded generator, so failures reproduce.
struct TestRandom {
    private var generator: SeededGenerator

    init(state: UInt64) { generator = SeededGenerator(seed: state) }

    mutating func next() -> Float { Float(generator.next() >> 40) / Float(1 << 24) * 2 - 1 }

    mutating func tensor(_ shape: [Int], scale: Float = 1, offset: Float = 0) -> Tensor {
        Tensor(shape: shape, data: (0..<shape.reduce(1, *)).map { _ in next() * scale + offset })
    }

    mutating func index(below count: Int) -> Int { min(count - 1, Int((next() + 1) / 2 * Float(count))) }
}
