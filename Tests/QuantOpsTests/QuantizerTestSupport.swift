import Foundation
import XCTest
@testable import QuantOps

/// Random layers from the library's seeded generator (SplitMix64), so they are the same on every run.
extension SeededGenerator {
    /// Roughly normal values (sum of uniforms), like trained conv weights.
    mutating func normal(_ count: Int, scale: Float = 1) -> [Float] {
        (0..<count).map { _ in
            var sum: Float = 0
            for _ in 0..<4 { sum += Float.random(in: -1...1, using: &self) }
            return sum * 0.866 * scale
        }
    }

    mutating func uniform(_ count: Int, in range: ClosedRange<Float>) -> [Float] {
        (0..<count).map { _ in Float.random(in: range, using: &self) }
    }

    mutating func tensor(_ shape: [Int], scale: Float = 1) -> Tensor {
        Tensor(shape: shape, data: normal(shape.reduce(1, *), scale: scale))
    }
}

/// Small random graphs and shared test data for the quantizer, transform and DF-MPC tests.
enum QuantizerFixtures {
    static func batchNorm(_ channels: Int, _ random: inout SeededGenerator) -> BatchNorm {
        BatchNorm(gamma: Tensor(shape: [channels], data: random.uniform(channels, in: 0.5...1.5)),
                  beta: Tensor(shape: [channels], data: random.uniform(channels, in: -0.3...0.3)),
                  runningMean: Tensor(shape: [channels], data: random.uniform(channels, in: -0.2...0.2)),
                  runningVar: Tensor(shape: [channels], data: random.uniform(channels, in: 0.2...2)))
    }

    /// input -> conv1 -> bn1 -> relu -> conv2 -> bn2 -> relu -> gap -> flatten -> linear,
    /// with conv1 3->8 and conv2 8->6, 3x3, padding 1.
    static func convBNReLUConv(seed: UInt64) -> Model {
        var random = SeededGenerator(seed: seed)
        let conv1 = Conv2D(weight: random.tensor([8, 3, 3, 3], scale: 0.3), padding: (1, 1))
        let conv2 = Conv2D(weight: random.tensor([6, 8, 3, 3], scale: 0.2), padding: (1, 1))
        let linear = Linear(weight: random.tensor([4, 6], scale: 0.5),
                            bias: Tensor(shape: [4], data: random.uniform(4, in: -0.1...0.1)))
        let nodes = [
            Node(name: "input", operation: .input, inputs: []),
            Node(name: "conv1", operation: .conv(conv1), inputs: [0]),
            Node(name: "bn1", operation: .batchNorm(batchNorm(8, &random)), inputs: [1]),
            Node(name: "relu1", operation: .relu, inputs: [2]),
            Node(name: "conv2", operation: .conv(conv2), inputs: [3]),
            Node(name: "bn2", operation: .batchNorm(batchNorm(6, &random)), inputs: [4]),
            Node(name: "relu2", operation: .relu, inputs: [5]),
            Node(name: "pool", operation: .globalAveragePool, inputs: [6]),
            Node(name: "flatten", operation: .flatten, inputs: [7]),
            Node(name: "linear", operation: .linear(linear), inputs: [8]),
        ]
        return Model(name: "tiny", nodes: nodes, normalization: Normalization(mean: [0, 0, 0], std: [1, 1, 1]))
    }

    static func images(_ count: Int, seed: UInt64, size: Int = 6) -> Tensor {
        var random = SeededGenerator(seed: seed)
        return random.tensor([count, 3, size, size])
    }

    static func maxRelativeDifference(_ a: Tensor, _ b: Tensor) -> Float {
        let scale = b.data.map(abs).max() ?? 1
        return zip(a.data, b.data).map { abs($0 - $1) }.max().map { $0 / Swift.max(scale, 1e-12) } ?? 0
    }
}
