@testable import QuantOps
import XCTest

/// The oneDNN whole-model path against the node-by-node path on graphs that exercise every
/// fusion and fallback: grouped, dilated, strided and biased convolutions, batch norm with and
/// without ReLU, residual sums, pooling and ReLU6 between convolutions.
final class EngineCompiledModelTests: XCTestCase {
    func batchNorm(_ channels: Int, _ random: inout KernelTests.SplitMix) -> QuantOps.Operation {
        .batchNorm(BatchNorm(gamma: random.tensor([channels]), beta: random.tensor([channels]),
                             runningMean: random.tensor([channels]),
                             runningVar: Tensor(shape: [channels], data: (0..<channels).map { _ in 0.5 + abs(random.next()) })))
    }

    func syntheticModel() -> Model {
        var random = KernelTests.SplitMix(state: 99)
        var nodes: [Node] = []
        func add(_ name: String, _ operation: QuantOps.Operation, _ inputs: [Int]) -> Int {
            nodes.append(Node(name: name, operation: operation, inputs: inputs))
            return nodes.count - 1
        }
        let input = add("input", .input, [])
        let stem = add("stem", .conv(Conv2D(weight: random.tensor([8, 3, 3, 3]), bias: random.tensor([8]), padding: (1, 1))), [input])
        let stemNorm = add("stem.bn", batchNorm(8, &random), [stem])
        let grouped = add("grouped", .conv(Conv2D(weight: random.tensor([8, 2, 3, 3]), padding: (2, 2), dilation: (2, 2), groups: 4)), [stemNorm])
        let groupedNorm = add("grouped.bn", batchNorm(8, &random), [grouped])
        let sum = add("sum", .add, [groupedNorm, stemNorm])
        let activated = add("sum.relu", .relu, [sum])
        let strided = add("strided", .conv(Conv2D(weight: random.tensor([16, 8, 3, 3]), stride: (2, 2), padding: (1, 1))), [activated])
        let clipped = add("clip", .relu6, [strided])
        let pooled = add("maxpool", .maxPool(Pooling(kernel: 3, stride: 1, padding: 1)), [clipped])
        let depthwise = add("depthwise", .conv(Conv2D(weight: random.tensor([16, 1, 3, 3]), padding: (1, 1), groups: 16)), [pooled])
        let depthwiseNorm = add("depthwise.bn", batchNorm(16, &random), [depthwise])
        let depthwiseRelu = add("depthwise.relu", .relu, [depthwiseNorm])
        let shortcut = add("shortcut", .shortcutA(stride: 2, padChannels: 4), [activated])
        let pointwise = add("pointwise", .conv(Conv2D(weight: random.tensor([16, 16, 1, 1]))), [depthwiseRelu])
        let joined = add("join", .add, [pointwise, shortcut])
        let averaged = add("avgpool", .averagePool(Pooling(kernel: 2, stride: 2)), [joined])
        let global = add("gap", .globalAveragePool, [averaged])
        let flat = add("flatten", .flatten, [global])
        _ = add("fc", .linear(Linear(weight: random.tensor([5, 16]), bias: random.tensor([5]))), [flat])
        return Model(name: "synthetic", nodes: nodes, normalization: Normalization(mean: [0, 0, 0], std: [1, 1, 1]))
    }

    func testMatchesTheNodeByNodePath() throws {
        let model = syntheticModel()
        var random = KernelTests.SplitMix(state: 3)
        let compiled = try CompiledModel(model)
        for batch in [3, 1, 3] {
            let input = random.tensor([batch, 3, 12, 12])
            let reference = try ForwardPass.reference(model, input: input)
            let fast = try compiled.logits(input)
            XCTAssertEqual(fast.shape, [batch, 5])
            XCTAssertLessThan(EngineFixtures.relativeError(fast.data, reference.data), 1e-5)
        }
    }

    func testBothBackendsAgreeOnTheFusedPath() throws {
        let model = syntheticModel()
        var random = KernelTests.SplitMix(state: 8)
        let input = random.tensor([2, 3, 12, 12])
        let saved = ConvolutionBackend.current
        defer { ConvolutionBackend.current = saved }
        var outputs: [ConvolutionBackend: Tensor] = [:]
        for backend in [ConvolutionBackend.im2colGEMM, .oneDNN] {
            ConvolutionBackend.current = backend
            outputs[backend] = try ForwardPass.logits(model, input: input)
        }
        let reference = try ForwardPass.reference(model, input: input)
        for (backend, output) in outputs {
            XCTAssertLessThan(EngineFixtures.relativeError(output.data, reference.data), 1e-5, "\(backend)")
        }
    }

    /// Calibration and analysis read intermediate tensors from the same executor that evaluates.
    /// An observed node ends its fused chain: a convolution observed before its batch norm, a
    /// batch norm before its residual sum, a sum before its ReLU each report their own output,
    /// on both backends, and the chains around them still fuse, so the logits do not change.
    func testObservedNodesReportTheirOwnOutputsOnEitherBackend() throws {
        let model = syntheticModel()
        var random = KernelTests.SplitMix(state: 17)
        let input = random.tensor([2, 3, 12, 12])
        var expected: [Int: Tensor] = [:]
        let reference = try ForwardPass.reference(model, input: input) { index, output in expected[index] = output }
        let names = ["stem", "grouped.bn", "sum", "clip", "depthwise.bn", "shortcut", "join", "gap"]
        let observing = Set(names.map { model.nodeIndex(named: $0)! })
        let saved = ConvolutionBackend.current
        defer { ConvolutionBackend.current = saved }
        for backend in [ConvolutionBackend.oneDNN, .im2colGEMM] {
            ConvolutionBackend.current = backend
            var seen: [Int: Tensor] = [:]
            var order: [Int] = []
            let logits = try ForwardPass.run(model, input: input, observing: observing) { index, output in
                seen[index] = output
                order.append(index)
            }
            XCTAssertEqual(order, observing.sorted(), "\(backend): each observed node once, in order")
            for index in observing {
                XCTAssertEqual(seen[index]?.shape, expected[index]!.shape, "\(model.nodes[index].name) (\(backend))")
                XCTAssertLessThan(EngineFixtures.relativeError(seen[index]!.data, expected[index]!.data), 1e-5,
                                  "\(model.nodes[index].name) (\(backend))")
            }
            // The sum before its ReLU has negative values: observing it did not see the clamped chain.
            XCTAssertLessThan(seen[model.nodeIndex(named: "sum")!]!.data.min()!, 0)
            XCTAssertLessThan(EngineFixtures.relativeError(logits.data, reference.data), 1e-5, "\(backend)")
        }
    }

    /// Observing a node keeps every chain that does not pass through it fused.
    func testObservingCutsOnlyTheChainsThroughTheObservedNodes() throws {
        let model = syntheticModel()
        let fused = ExecutionPlan(model)
        let index = { model.nodeIndex(named: $0)! }
        guard case .fused(let whole)? = fused.steps[index("sum.relu")] else { return XCTFail("conv, bn, add and ReLU should fuse") }
        XCTAssertEqual(whole.members, [index("grouped"), index("grouped.bn"), index("sum"), index("sum.relu")])
        let cut = ExecutionPlan(model, observing: [index("grouped.bn")])
        guard case .fused(let head)? = cut.steps[index("grouped.bn")], case .fused(let tail)? = cut.steps[index("sum.relu")] else {
            return XCTFail("the chain should split at the observed batch norm")
        }
        XCTAssertEqual(head.members, [index("grouped"), index("grouped.bn")])
        XCTAssertEqual(tail.members, [index("sum"), index("sum.relu")])
        // Chains elsewhere are as before.
        for name in ["stem.bn", "depthwise.relu", "join"] {
            guard case .fused(let before)? = fused.steps[index(name)], case .fused(let after)? = cut.steps[index(name)] else {
                return XCTFail("\(name) should end a fused chain in both plans")
            }
            XCTAssertEqual(before.members, after.members, name)
        }
    }

    /// Pooling runs as a oneDNN primitive on the blocked layout the convolution before it left.
    /// Windows at the border hold padding that must never win a max (the convolutions' outputs
    /// are mostly negative there) and that an average counts; a 2x2 window on an odd size needs
    /// negative right padding, which oneDNN cannot express, so it falls back to the plain kernel.
    func testPoolingOnBlockedLayoutsMatchesThePlainKernels() throws {
        var random = KernelTests.SplitMix(state: 41)
        var nodes: [Node] = [Node(name: "input", operation: .input, inputs: [])]
        func add(_ name: String, _ operation: QuantOps.Operation) {
            nodes.append(Node(name: name, operation: operation, inputs: [nodes.count - 1]))
        }
        add("stem", .conv(Conv2D(weight: random.tensor([16, 3, 3, 3]), bias: Tensor(shape: [16], data: Array(repeating: -2, count: 16)),
                                 stride: (2, 2), padding: (1, 1))))
        add("maxpool", .maxPool(Pooling(kernel: 3, stride: 2, padding: 1)))
        add("conv", .conv(Conv2D(weight: random.tensor([16, 16, 3, 3]), padding: (1, 1))))
        add("avgpool", .averagePool(Pooling(kernel: 3, stride: 2, padding: 1)))
        add("conv2", .conv(Conv2D(weight: random.tensor([16, 16, 1, 1]))))
        add("oddpool", .averagePool(Pooling(kernel: 2, stride: 2)))
        add("gap", .globalAveragePool)
        add("flatten", .flatten)
        add("fc", .linear(Linear(weight: random.tensor([4, 16]), bias: random.tensor([4]))))
        let model = Model(name: "pools", nodes: nodes, normalization: Normalization(mean: [0, 0, 0], std: [1, 1, 1]))
        let compiled = try CompiledModel(model)
        for (batch, height, width) in [(2, 45, 37), (1, 45, 37), (3, 30, 22)] {
            let input = random.tensor([batch, 3, height, width])
            var pooled: [String: Tensor] = [:]
            let reference = try ForwardPass.reference(model, input: input) { index, value in
                if model.nodes[index].name.hasSuffix("pool") { pooled[model.nodes[index].name] = value }
            }
            XCTAssertLessThan(pooled["maxpool"]!.data.min()!, 0, "the test needs negative windows")
            let fast = try compiled.logits(input)
            XCTAssertEqual(fast.shape, [batch, 4])
            XCTAssertLessThan(EngineFixtures.relativeError(fast.data, reference.data), 1e-5, "\(batch)x\(height)x\(width)")
        }
    }

    /// A parked compiled model serves the next run of the same model and settings only: a
    /// changed weight or thread count prepares a new one, and the parked one computes as a new
    /// one would.
    func testParkedModelsServeOnlyTheSameModelAndSettings() throws {
        let model = syntheticModel()
        var random = KernelTests.SplitMix(state: 5)
        let input = random.tensor([2, 3, 12, 12])
        let first = try CompiledModel.reusing(model)
        let expected = try first.logits(input)
        first.park()
        let again = try CompiledModel.reusing(model)
        XCTAssertTrue(again === first, "the same model should reuse the parked primitives")
        XCTAssertEqual(try again.logits(input), expected)
        again.park()
        XCTAssertTrue(try CompiledModel.reusing(model) === first)
        first.park()

        var changed = model
        let fc = changed.nodeIndex(named: "fc")!
        guard case .linear(var linear) = changed.nodes[fc].operation else { return XCTFail("fc is not linear") }
        linear.weight.data[0] += 1
        changed.nodes[fc].operation = .linear(linear)
        let other = try CompiledModel.reusing(changed)
        XCTAssertFalse(other === first, "a changed weight must not reuse the parked primitives")
        XCTAssertNotEqual(try other.logits(input), expected)
        other.park()

        let threads = EngineSettings.threads
        defer { EngineSettings.threads = threads }
        EngineSettings.threads = threads + 1
        XCTAssertFalse(try CompiledModel.reusing(changed) === other, "another thread count prepares anew")
    }

    func testShapeErrorsNameTheNode() throws {
        var model = syntheticModel()
        model.nodes[model.nodeIndex(named: "strided")!].operation = .conv(Conv2D(weight: Tensor(zeros: [16, 7, 3, 3])))
        XCTAssertThrowsError(try CompiledModel(model).run(Tensor(zeros: [1, 3, 12, 12]))) { error in
            XCTAssertTrue("\(error)".contains("'strided'"), "\(error)")
        }
    }
}
