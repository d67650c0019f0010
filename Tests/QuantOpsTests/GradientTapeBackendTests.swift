@testable import QuantOps
import Foundation
import XCTest

/// The tape's two convolution paths, oneDNN's training primitives and im2col + GEMM, against
/// each other on ResNet-20, and the oneDNN path's determinism at a fixed thread count.
///
/// `QSH_TAPE_BENCHMARK=1 swift test -c release --filter GradientTapeBackendTests` also times a
/// training step (forward, then backward with weight gradients) at batch 128 on both paths
/// (`QSH_TAPE_BENCHMARK_THREADS`, `QSH_TAPE_BENCHMARK_BATCH` change the thread count and batch).
final class GradientTapeBackendTests: XCTestCase {
    static func withBackend<Result>(_ backend: ConvolutionBackend, _ body: () throws -> Result) rethrows -> Result {
        let saved = ConvolutionBackend.current
        ConvolutionBackend.current = backend
        defer { ConvolutionBackend.current = saved }
        return try body()
    }

    /// Logit loss seeds and every gradient, on one path.
    static func step(_ model: Model, _ input: Tensor, seed: Tensor, mode: BatchNormMode = .inference) throws -> (Tensor, Gradients) {
        let tape = try GradientTape(model: model, input: input, batchNormMode: mode)
        return (tape.output, try tape.backward(seeds: [tape.lastNode: seed]))
    }

    static func relativeError(_ a: Tensor?, _ b: Tensor?) -> Double {
        guard let a, let b, a.shape == b.shape else { return .infinity }
        var difference = 0.0, reference = 0.0
        for (x, y) in zip(a.data, b.data) {
            difference += Double(x - y) * Double(x - y)
            reference += Double(y) * Double(y)
        }
        return difference.squareRoot() / max(reference.squareRoot(), 1e-12)
    }

    func testOneDNNAndGEMMPathsAgreeOnResNet20() throws {
        let model = try EngineFixtures.zooModel("resnet20")
        var random = TestRandom(state: 5)
        let input = random.tensor([3, 3, 32, 32])
        for mode in [BatchNormMode.inference, .batchStatistics] {
            let seed = random.tensor([3, 10])
            let (fastOutput, fast) = try Self.withBackend(.oneDNN) { try Self.step(model, input, seed: seed, mode: mode) }
            let (plainOutput, plain) = try Self.withBackend(.im2colGEMM) { try Self.step(model, input, seed: seed, mode: mode) }
            XCTAssertLessThan(Self.relativeError(fastOutput, plainOutput), 1e-5, "logits, \(mode)")
            XCTAssertLessThan(Self.relativeError(fast.input, plain.input), 1e-4, "input gradient, \(mode)")
            XCTAssertEqual(Set(fast.parameters.keys), Set(plain.parameters.keys))
            for (node, gradient) in plain.parameters {
                XCTAssertLessThan(Self.relativeError(fast.parameters[node]?.weight, gradient.weight), 1e-4,
                                  "\(model.nodes[node].name).weight, \(mode)")
                if let bias = gradient.bias {
                    XCTAssertLessThan(Self.relativeError(fast.parameters[node]?.bias, bias), 1e-4, "\(model.nodes[node].name).bias, \(mode)")
                }
            }
        }
    }

    func testOneDNNPathRepeatsExactly() throws {
        let model = try EngineFixtures.zooModel("resnet20")
        var random = TestRandom(state: 6)
        let input = random.tensor([4, 3, 32, 32])
        let seed = random.tensor([4, 10])
        let first = try Self.withBackend(.oneDNN) { try Self.step(model, input, seed: seed) }
        let second = try Self.withBackend(.oneDNN) { try Self.step(model, input, seed: seed) }
        XCTAssertEqual(first.0, second.0)
        XCTAssertEqual(first.1.input, second.1.input)
        XCTAssertEqual(first.1.parameters, second.1.parameters)
    }

    /// Images per second of a training step on ResNet-20, batch 128, both paths.
    func testTrainingStepThroughput() throws {
        guard ProcessInfo.processInfo.environment["QSH_TAPE_BENCHMARK"] != nil else {
            throw XCTSkip("set QSH_TAPE_BENCHMARK=1 to time the training step")
        }
        let environment = ProcessInfo.processInfo.environment
        let savedThreads = EngineSettings.threads
        defer { EngineSettings.threads = savedThreads }
        if let threads = environment["QSH_TAPE_BENCHMARK_THREADS"].flatMap(Int.init) { EngineSettings.threads = threads }
        let model = try EngineFixtures.zooModel("resnet20")
        var random = TestRandom(state: 7)
        let batch = environment["QSH_TAPE_BENCHMARK_BATCH"].flatMap(Int.init) ?? 128
        let input = random.tensor([batch, 3, 32, 32])
        let seed = random.tensor([batch, 10])
        let clock = ContinuousClock()
        for backend in [ConvolutionBackend.oneDNN, .im2colGEMM] {
            try Self.withBackend(backend) {
                _ = try Self.step(model, input, seed: seed)
                var seconds: [Double] = []
                for _ in 0 ..< 5 {
                    let start = clock.now
                    let tape = try GradientTape(model: model, input: input)
                    let forward = clock.now
                    _ = try tape.backward(seeds: [tape.lastNode: seed], input: false)
                    let end = clock.now
                    seconds.append((end - start).seconds)
                    print("tape \(backend) batch \(batch): forward \(String(format: "%.1f", (forward - start).seconds * 1e3)) ms, backward \(String(format: "%.1f", (end - forward).seconds * 1e3)) ms")
                }
                let best = seconds.min() ?? .infinity
                print("tape \(backend) batch \(batch) threads \(EngineSettings.threads): \(String(format: "%.0f", Double(batch) / best)) images/s (best of 5 training steps, \(String(format: "%.1f", best * 1e3)) ms)")
            }
        }
    }
}
