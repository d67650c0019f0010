@testable import QuantOps
import XCTest

/// Every backward kernel against central finite differences of the forward pass.
///
/// The scalar is `L = sum(r * output)` for a fixed random `r`, so `dL/d output = r` seeds the
/// tape. Each check compares the analytic gradient with (L(x + h) - L(x - h)) / 2h, with L
/// accumulated in Double, on a sample of input, weight, bias, gamma and beta entries.
final class GradientTests: XCTestCase {
    typealias SplitMix = TestRandom

    enum Parameter: CaseIterable { case weight, bias }

    // MARK: - Building blocks

    static func model(_ nodes: [(String, QuantOps.Operation, [Int])]) -> Model {
        Model(name: "gradient-check", nodes: nodes.map { Node(name: $0.0, operation: $0.1, inputs: $0.2) },
              normalization: Normalization(mean: [0, 0, 0], std: [1, 1, 1]))
    }

    static func batchNorm(_ channels: Int, _ random: inout SplitMix) -> BatchNorm {
        BatchNorm(gamma: random.tensor([channels], scale: 0.5, offset: 1), beta: random.tensor([channels], scale: 0.3),
                  runningMean: random.tensor([channels], scale: 0.2), runningVar: random.tensor([channels], scale: 0.3, offset: 1))
    }

    /// The parameter tensor of node `index`: conv/linear weight and bias, BN gamma and beta.
    static func parameter(_ model: Model, _ index: Int, _ which: Parameter) -> Tensor? {
        switch (model.nodes[index].operation, which) {
        case (.conv(let conv), .weight): return conv.weight
        case (.conv(let conv), .bias): return conv.bias
        case (.linear(let layer), .weight): return layer.weight
        case (.linear(let layer), .bias): return layer.bias
        case (.batchNorm(let norm), .weight): return norm.gamma
        case (.batchNorm(let norm), .bias): return norm.beta
        default: return nil
        }
    }

    static func nudged(_ model: Model, _ index: Int, _ which: Parameter, element: Int, by delta: Float) -> Model {
        var model = model
        switch (model.nodes[index].operation, which) {
        case (.conv(var conv), .weight): conv.weight.data[element] += delta; model.nodes[index].operation = .conv(conv)
        case (.conv(var conv), .bias): conv.bias?.data[element] += delta; model.nodes[index].operation = .conv(conv)
        case (.linear(var layer), .weight): layer.weight.data[element] += delta; model.nodes[index].operation = .linear(layer)
        case (.linear(var layer), .bias): layer.bias?.data[element] += delta; model.nodes[index].operation = .linear(layer)
        case (.batchNorm(var norm), .weight): norm.gamma.data[element] += delta; model.nodes[index].operation = .batchNorm(norm)
        case (.batchNorm(var norm), .bias): norm.beta.data[element] += delta; model.nodes[index].operation = .batchNorm(norm)
        default: break
        }
        return model
    }

    static func projection(_ model: Model, _ input: Tensor, _ mode: BatchNormMode, _ r: Tensor) throws -> Double {
        let output = try GradientTape(model: model, input: input, batchNormMode: mode).output
        var sum = 0.0
        for (a, b) in zip(output.data, r.data) { sum += Double(a) * Double(b) }
        return sum
    }

    /// Compares analytic and finite-difference gradients of `sum(r * output)` for the input and
    /// every parameter of the model, `samples` entries of each.
    func checkGradients(_ model: Model, input: Tensor, mode: BatchNormMode = .inference, step: Float = 3e-3,
                        samples: Int = 12, tolerance: Double = 1e-2, seed: UInt64 = 1,
                        file: StaticString = #filePath, line: UInt = #line) throws {
        var random = SplitMix(state: seed)
        let tape = try GradientTape(model: model, input: input, batchNormMode: mode)
        let r = random.tensor(tape.output.shape)
        let gradients = try tape.backward(seeds: [tape.lastNode: r])

        func compare(_ label: String, count: Int, analytic: Tensor?, perturbed: (Int, Float) throws -> Double) throws {
            guard let analytic else { return XCTFail("\(label): no gradient", file: file, line: line) }
            XCTAssertEqual(analytic.count, count, "\(label): gradient size", file: file, line: line)
            var difference = 0.0, reference = 0.0
            let picks = count <= samples ? Array(0..<count) : (0..<samples).map { _ in random.index(below: count) }
            for element in picks {
                let numeric = (try perturbed(element, step) - perturbed(element, -step)) / (2 * Double(step))
                let exact = Double(analytic.data[element])
                difference += (numeric - exact) * (numeric - exact)
                reference += numeric * numeric
            }
            let relative = difference.squareRoot() / max(reference.squareRoot(), 1e-6)
            XCTAssertLessThan(relative, tolerance, "\(label): analytic vs finite-difference gradient", file: file, line: line)
        }

        try compare("input", count: input.count, analytic: gradients.input) { element, delta in
            var moved = input
            moved.data[element] += delta
            return try Self.projection(model, moved, mode, r)
        }
        for index in model.nodes.indices {
            for which in Parameter.allCases {
                guard let values = Self.parameter(model, index, which) else { continue }
                let analytic = which == .weight ? gradients.parameters[index]?.weight : gradients.parameters[index]?.bias
                try compare("\(model.nodes[index].name).\(which)", count: values.count, analytic: analytic) { element, delta in
                    try Self.projection(Self.nudged(model, index, which, element: element, by: delta), input, mode, r)
                }
            }
        }
        XCTAssertEqual(gradients.parameters.count, Set(model.nodes.indices.filter { Self.parameter(model, $0, .weight) != nil }).count,
                       "every layer with parameters has a gradient", file: file, line: line)
    }

    // MARK: - Kernels

    func testConvolutionWithStridePaddingDilationGroupsAndBias() throws {
        var random = SplitMix(state: 11)
        let conv = Conv2D(weight: random.tensor([6, 2, 3, 3]), bias: random.tensor([6]), stride: (2, 1), padding: (1, 2),
                          dilation: (2, 1), groups: 2)
        try checkGradients(Self.model([("input", .input, []), ("conv", .conv(conv), [0])]), input: random.tensor([2, 4, 7, 6]))
    }

    func testConvolutionWithoutBiasAndRectangularKernel() throws {
        var random = SplitMix(state: 12)
        let conv = Conv2D(weight: random.tensor([5, 3, 2, 3]), stride: (1, 2), padding: (0, 1))
        try checkGradients(Self.model([("input", .input, []), ("conv", .conv(conv), [0])]), input: random.tensor([3, 3, 5, 6]))
    }

    func testDepthwiseAndPointwiseConvolutions() throws {
        var random = SplitMix(state: 13)
        let depthwise = Conv2D(weight: random.tensor([4, 1, 3, 3]), bias: random.tensor([4]), padding: (1, 1), groups: 4)
        let pointwise = Conv2D(weight: random.tensor([3, 4, 1, 1]), bias: random.tensor([3]))
        let stridedPointwise = Conv2D(weight: random.tensor([2, 3, 1, 1]), stride: (2, 2))
        let model = Self.model([("input", .input, []), ("dw", .conv(depthwise), [0]), ("pw", .conv(pointwise), [1]),
                                ("down", .conv(stridedPointwise), [2])])
        try checkGradients(model, input: random.tensor([2, 4, 6, 6]))
    }

    func testConvolutionGradientsDoNotDependOnThreadCount() throws {
        var random = SplitMix(state: 14)
        let conv = Conv2D(weight: random.tensor([8, 3, 3, 3]), padding: (1, 1))
        let model = Self.model([("input", .input, []), ("conv", .conv(conv), [0])])
        let input = random.tensor([5, 3, 8, 8])
        let seed = random.tensor([5, 8, 8, 8])
        let saved = EngineSettings.threads
        defer { EngineSettings.threads = saved }
        var results: [Gradients] = []
        for threads in [1, 2, 3] {
            EngineSettings.threads = threads
            results.append(try GradientTape(model: model, input: input).backward(seeds: [1: seed]))
        }
        for other in results.dropFirst() {
            XCTAssertEqual(other.input, results[0].input)
            XCTAssertEqual(other.parameters[1]?.weight.data ?? [], results[0].parameters[1]?.weight.data ?? [],
                           accuracy: 1e-4)
        }
    }

    func testBatchNormInInferenceMode() throws {
        var random = SplitMix(state: 21)
        let model = Self.model([("input", .input, []), ("bn", .batchNorm(Self.batchNorm(3, &random)), [0])])
        try checkGradients(model, input: random.tensor([2, 3, 4, 5]))
    }

    func testBatchNormWithBatchStatistics() throws {
        var random = SplitMix(state: 22)
        let model = Self.model([("input", .input, []), ("bn", .batchNorm(Self.batchNorm(3, &random)), [0])])
        let input = random.tensor([3, 3, 4, 4], scale: 2, offset: 0.5)
        try checkGradients(model, input: input, mode: .batchStatistics)
        // The output is normalized by the batch itself: zero mean and gamma-scaled unit variance per channel.
        let tape = try GradientTape(model: model, input: input, batchNormMode: .batchStatistics)
        guard case .batchNorm(let norm) = model.nodes[1].operation else { return XCTFail() }
        let statistics = try GradientTape.measure(tape.output, channels: 3, node: "bn")
        for c in 0..<3 {
            XCTAssertEqual(statistics.mean[c], norm.beta.data[c], accuracy: 1e-5)
            XCTAssertEqual(statistics.variance[c].squareRoot(), abs(norm.gamma.data[c]), accuracy: 1e-3)
        }
    }

    func testReLUAndReLU6() throws {
        var random = SplitMix(state: 31)
        let model = Self.model([("input", .input, []), ("relu", .relu, [0]), ("relu6", .relu6, [0]), ("sum", .add, [1, 2])])
        // Values spread over [-8, 8] so that both clamps cut some of them.
        try checkGradients(model, input: random.tensor([2, 2, 5, 5], scale: 8))
    }

    func testAddWithFanOutAndOptionAShortcut() throws {
        var random = SplitMix(state: 41)
        let conv = Conv2D(weight: random.tensor([8, 4, 3, 3]), stride: (2, 2), padding: (1, 1))
        let model = Self.model([("input", .input, []), ("conv", .conv(conv), [0]),
                                ("shortcut", .shortcutA(stride: 2, padChannels: 2), [0]), ("add", .add, [1, 2]),
                                ("double", .add, [3, 3])])
        try checkGradients(model, input: random.tensor([2, 4, 7, 7]))
    }

    func testPooling() throws {
        var random = SplitMix(state: 51)
        let model = Self.model([("input", .input, []),
                                ("avg", .averagePool(Pooling(kernel: 3, stride: 2, padding: 1)), [0]),
                                ("max", .maxPool(Pooling(kernel: 2, stride: 2)), [1]),
                                ("gap", .globalAveragePool, [0]),
                                ("max2", .maxPool(Pooling(kernel: 3, stride: 1, padding: 1)), [0]),
                                ("gap2", .globalAveragePool, [4]), ("gap3", .globalAveragePool, [2]),
                                ("sum", .add, [3, 5]), ("out", .add, [6, 7])])
        try checkGradients(model, input: random.tensor([2, 3, 9, 9]))
    }

    func testAsymmetricPaddingOfImportedConvolutions() throws {
        var random = SplitMix(state: 15)
        let conv = Conv2D(weight: random.tensor([4, 3, 3, 3]), bias: random.tensor([4]), stride: (2, 2), padding: (0, 0),
                          trailingPadding: (1, 1))
        try checkGradients(Self.model([("input", .input, []), ("conv", .conv(conv), [0])]), input: random.tensor([2, 3, 8, 8]))
    }

    /// Concat, products with a broadcast gate (squeeze-excite) and the pointwise functions of
    /// imported graphs, away from their kinks.
    func testConcatMultiplyAndPointwiseFunctions() throws {
        var random = SplitMix(state: 55)
        let conv = Conv2D(weight: random.tensor([3, 3, 3, 3]), bias: random.tensor([3]), padding: (1, 1))
        let model = Self.model([("input", .input, []), ("conv", .conv(conv), [0]), ("join", .concat, [0, 1]),
                                ("pool", .globalAveragePool, [2]), ("gate", .pointwise(.sigmoid), [3]),
                                ("excite", .multiply, [2, 4]), ("swish", .pointwise(.hardSwish), [5]),
                                ("leaky", .pointwise(.leakyRelu(alpha: 0.1)), [6]),
                                ("hard", .pointwise(.hardSigmoid(alpha: 0.2, beta: 0.5)), [7]),
                                ("square", .multiply, [8, 8])])
        try checkGradients(model, input: random.tensor([2, 3, 5, 5], scale: 2))
    }

    func testLinearAndFlatten() throws {
        var random = SplitMix(state: 61)
        let layer = Linear(weight: random.tensor([5, 12]), bias: random.tensor([5]))
        let model = Self.model([("input", .input, []), ("flatten", .flatten, [0]), ("fc", .linear(layer), [1])])
        try checkGradients(model, input: random.tensor([3, 3, 2, 2]))
    }

    /// Rounding has no useful derivative; the straight-through estimator passes the gradient
    /// inside the quantizer's clipping range and stops it outside.
    func testFakeQuantizerPassesGradientStraightThroughInsideItsRange() throws {
        let quantizer = ActivationQuantizer(bits: 4, scheme: .asymmetric, range: -1...2)
        let model = Self.model([("input", .input, []), ("quant", .fakeQuantize(quantizer), [0])])
        let input = Tensor(shape: [1, 1, 2, 3], data: [-3, -0.99, 0, 0.4, 1.99, 5])
        let seed = Tensor(shape: [1, 1, 2, 3], data: [1, 2, 3, 4, 5, 6])
        let gradients = try GradientTape(model: model, input: input).backward(seeds: [1: seed])
        XCTAssertEqual(gradients.input?.data, [0, 2, 3, 4, 5, 0])
        let uncalibrated = Self.model([("input", .input, []), ("quant", .fakeQuantize(ActivationQuantizer(bits: 8, scheme: .symmetric)), [0])])
        XCTAssertThrowsError(try GradientTape(model: uncalibrated, input: input))
    }

    /// LSQ's step-size gradient, computed here by hand: S = 3/15 and Z = 5 for the range [-1, 2]
    /// at 4 bits; inside the range d x'/d S = round(x/S) - x/S, outside the clipped level minus Z
    /// (-5 below, 10 above).
    func testFakeQuantizerGivesLSQsStepSizeGradient() throws {
        let quantizer = ActivationQuantizer(bits: 4, scheme: .asymmetric, range: -1...2)
        let model = Self.model([("input", .input, []), ("quant", .fakeQuantize(quantizer), [0])])
        let input = Tensor(shape: [1, 1, 2, 3], data: [-3, -0.99, 0, 0.4, 1.99, 5])
        let seed = Tensor(shape: [1, 1, 2, 3], data: [1, 2, 3, 4, 5, 6])
        let step = 3.0 / 15
        let expected = 1 * -5.0 + 2 * (-5 - -0.99 / step) + 3 * 0 + 4 * (2 - 0.4 / step) + 5 * (10 - 1.99 / step) + 6 * 10
        let tape = try GradientTape(model: model, input: input)
        XCTAssertNil(try tape.backward(seeds: [1: seed]).parameters[1], "the step size's gradient is formed only when asked for")
        let gradients = try tape.backward(seeds: [1: seed], stepSizes: true)
        let scale = try XCTUnwrap(gradients.parameters[1]?.weight.data)
        XCTAssertEqual(scale.count, 1)
        XCTAssertEqual(Double(scale[0]), expected, accuracy: 1e-4)
        // Moving the step keeps the levels and the zero point.
        let moved = try XCTUnwrap(quantizer.withStepSize(0.25))
        XCTAssertEqual(moved.grid()?.scales, [0.25])
        XCTAssertEqual(moved.grid()?.zeroPoints, quantizer.grid()?.zeroPoints)
        XCTAssertEqual(moved.grid()?.levels, quantizer.grid()?.levels)
    }

    // MARK: - Whole networks

    /// conv-BN-ReLU stem, a residual block with an option-A shortcut, global pooling and a classifier.
    static func smallResidualNetwork(_ random: inout SplitMix) -> Model {
        let stem = Conv2D(weight: random.tensor([4, 3, 3, 3], scale: 0.5), padding: (1, 1))
        let first = Conv2D(weight: random.tensor([8, 4, 3, 3], scale: 0.3), stride: (2, 2), padding: (1, 1))
        let second = Conv2D(weight: random.tensor([8, 8, 3, 3], scale: 0.3), padding: (1, 1))
        let classifier = Linear(weight: random.tensor([10, 8]), bias: random.tensor([10]))
        return model([("input", .input, []),
                      ("conv1", .conv(stem), [0]), ("bn1", .batchNorm(batchNorm(4, &random)), [1]), ("relu1", .relu, [2]),
                      ("block.conv1", .conv(first), [3]), ("block.bn1", .batchNorm(batchNorm(8, &random)), [4]),
                      ("block.relu", .relu, [5]),
                      ("block.conv2", .conv(second), [6]), ("block.bn2", .batchNorm(batchNorm(8, &random)), [7]),
                      ("block.shortcut", .shortcutA(stride: 2, padChannels: 2), [3]), ("block.add", .add, [8, 9]),
                      ("block.relu2", .relu, [10]), ("pool", .globalAveragePool, [11]), ("flatten", .flatten, [12]),
                      ("fc", .linear(classifier), [13])])
    }

    func testResidualNetworkInBothBatchNormModes() throws {
        var random = SplitMix(state: 71)
        let model = Self.smallResidualNetwork(&random)
        let input = random.tensor([3, 3, 8, 8])
        try checkGradients(model, input: input, mode: .inference, samples: 8)
        // In batch-statistics mode, shifting a beta moves a whole channel across the ReLU kinks
        // at once and every later batch norm re-normalizes the effect, so the finite difference
        // carries a kink error that shrinks with the step (bn1.bias: 2.1% at h=1e-2, 1.4% at
        // 1e-3, 0.7% at 3e-4, 0.2% at 1e-4) until float32 rounding takes over below 3e-4.
        try checkGradients(model, input: input, mode: .batchStatistics, step: 1e-3, samples: 8, tolerance: 2e-2)
    }

    func testInputOnlyBackwardMatchesFullBackward() throws {
        var random = SplitMix(state: 81)
        let model = Self.smallResidualNetwork(&random)
        let input = random.tensor([2, 3, 8, 8])
        let tape = try GradientTape(model: model, input: input)
        let seed = random.tensor(tape.output.shape)
        let full = try tape.backward(seeds: [tape.lastNode: seed])
        let inputOnly = try tape.backward(seeds: [tape.lastNode: seed], parameters: false)
        XCTAssertEqual(inputOnly.input, full.input)
        XCTAssertTrue(inputOnly.parameters.isEmpty)
        let parametersOnly = try tape.backward(seeds: [tape.lastNode: seed], input: false)
        XCTAssertNil(parametersOnly.input)
        XCTAssertEqual(parametersOnly.parameters[1], full.parameters[1])
    }

    func testTapeOutputMatchesForwardPassAndStopsEarly() throws {
        var random = SplitMix(state: 91)
        let model = Self.smallResidualNetwork(&random)
        let input = random.tensor([2, 3, 8, 8])
        let expected = try ForwardPass.reference(model, input: input)
        XCTAssertEqual(try GradientTape(model: model, input: input).output.data, expected.data, accuracy: 1e-5)
        let partial = try GradientTape(model: model, input: input, through: 5)
        XCTAssertEqual(partial.outputs.count, 6)
        XCTAssertThrowsError(try partial.backward(seeds: [7: Tensor(zeros: [1])]))
        XCTAssertThrowsError(try partial.backward(seeds: [5: Tensor(zeros: [1])]))
    }
}

private func XCTAssertEqual(_ a: [Float], _ b: [Float], accuracy: Float, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(a.count, b.count, file: file, line: line)
    for (x, y) in zip(a, b) where abs(x - y) > accuracy * max(1, abs(y)) {
        return XCTFail("\(x) != \(y)", file: file, line: line)
    }
}
