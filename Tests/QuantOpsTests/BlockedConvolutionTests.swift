import QuantOps
import XCTest

/// qsh's own AVX2 convolutions (`BlockedConvolution`: Winograd F(4x4, 3x3), Sources/CKernels)
/// against a brute-force convolution in double precision and against the node-by-node path,
/// on shapes that leave partial tiles, padded channel blocks, asymmetric padding, a residual
/// sum and a ReLU6 clamp, and on the layers that stay on oneDNN.
final class BlockedConvolutionTests: XCTestCase {
    override func setUpWithError() throws {
        guard CompiledModel.runsOwnKernels else {
            throw XCTSkip("qsh's own convolution kernels do not run here (no AVX2 and FMA, oneDNN at AVX-512, or QSH_OWN_KERNELS=0)")
        }
    }

    func singleConvolution(inChannels: Int, outChannels: Int, kernel: Int = 3, stride: Int = 1,
                           trailingPadding: (Int, Int)? = nil) -> (model: Model, weight: Tensor, bias: Tensor) {
        var random = TestRandom(state: UInt64(inChannels * 100 + outChannels))
        let weight = random.tensor([outChannels, inChannels, kernel, kernel], scale: 0.3)
        let bias = random.tensor([outChannels])
        let padding = (kernel / 2, kernel / 2)
        let model = Model(name: "conv", nodes: [
            Node(name: "input", operation: .input, inputs: []),
            Node(name: "conv", operation: .conv(Conv2D(weight: weight, bias: bias, stride: (stride, stride), padding: padding,
                                                       trailingPadding: trailingPadding)),
                 inputs: [0]),
        ], normalization: Normalization(mean: [0], std: [1]))
        return (model, weight, bias)
    }

    /// The convolution in double precision, straight from its definition.
    func bruteForce(_ input: Tensor, _ weight: Tensor, _ bias: Tensor, stride: Int = 1, padding: (Int, Int),
                    outSize: (Int, Int)) -> [Double] {
        let (n, c, h, w) = (input.shape[0], input.shape[1], input.shape[2], input.shape[3])
        let (k, size) = (weight.shape[0], weight.shape[2])
        var output = [Double](repeating: 0, count: n * k * outSize.0 * outSize.1)
        for image in 0..<n {
            for out in 0..<k {
                for y in 0..<outSize.0 {
                    for x in 0..<outSize.1 {
                        var sum = Double(bias.data[out])
                        for channel in 0..<c {
                            for i in 0..<size {
                                for j in 0..<size {
                                    let (yy, xx) = (y * stride + i - padding.0, x * stride + j - padding.1)
                                    guard yy >= 0, yy < h, xx >= 0, xx < w else { continue }
                                    sum += Double(weight.data[((out * c + channel) * size + i) * size + j])
                                        * Double(input.data[((image * c + channel) * h + yy) * w + xx])
                                }
                            }
                        }
                        output[((image * k + out) * outSize.0 + y) * outSize.1 + x] = sum
                    }
                }
            }
        }
        return output
    }

    func testWinogradEqualsTheDefinitionOnPartialTilesAndPaddedChannels() throws {
        // 36 inputs and 24 outputs fill neither 8- nor 16-channel blocks; 13x11 leaves partial tiles.
        for (inChannels, outChannels, trailing) in [(32, 32, nil), (36, 24, nil), (40, 40, (0, 2) as (Int, Int)?)] {
            let (model, weight, bias) = singleConvolution(inChannels: inChannels, outChannels: outChannels, trailingPadding: trailing)
            let outSize = (13 + 1 + (trailing?.0 ?? 1) - 2, 11 + 1 + (trailing?.1 ?? 1) - 2)
            try checkAgainstTheDefinition(model, weight, bias, inChannels: inChannels, padding: (1, 1), outSize: outSize,
                                          kernel: "winograd", tolerance: 1e-5)
        }
    }

    /// The packed-patch product on strided 3x3 layers: 136 inputs leave a padded channel block,
    /// 40 outputs a padded 16-output panel, 13x11 at stride 2 a partial last chunk, and the
    /// trailing padding of an imported graph shifts the windows.
    func testPatchProductEqualsTheDefinitionOnStridedLayers() throws {
        for (inChannels, outChannels, trailing) in [(128, 32, nil), (136, 40, nil), (128, 24, (0, 1) as (Int, Int)?)] {
            let (model, weight, bias) = singleConvolution(inChannels: inChannels, outChannels: outChannels, stride: 2,
                                                          trailingPadding: trailing)
            let outSize = ((13 + 1 + (trailing?.0 ?? 1) - 3) / 2 + 1, (11 + 1 + (trailing?.1 ?? 1) - 3) / 2 + 1)
            try checkAgainstTheDefinition(model, weight, bias, inChannels: inChannels, stride: 2, padding: (1, 1), outSize: outSize,
                                          kernel: "patch", tolerance: 1e-5)
        }
    }

    func testLayersOutsideTheKernelsStayOnOneDNN() throws {
        for (inChannels, kernel, stride) in [(16, 3, 1), (32, 1, 1), (64, 3, 2), (128, 1, 2)] {
            let compiled = try CompiledModel(singleConvolution(inChannels: inChannels, outChannels: 32, kernel: kernel,
                                                               stride: stride).model)
            _ = try compiled.run(Tensor(zeros: [1, inChannels, 8, 8]))
            XCTAssertEqual(compiled.ownKernelConvolutions, [:], "\(inChannels) channels, \(kernel)x\(kernel) stride \(stride)")
        }
    }

    func checkAgainstTheDefinition(_ model: Model, _ weight: Tensor, _ bias: Tensor, inChannels: Int, stride: Int = 1,
                                   padding: (Int, Int), outSize: (Int, Int), kernel: String, tolerance: Double) throws {
        var random = TestRandom(state: 7)
        let input = random.tensor([3, inChannels, 13, 11])
        let compiled = try CompiledModel(model)
        let output = try compiled.run(input)
        XCTAssertEqual(compiled.ownKernelConvolutions, ["conv": kernel])
        XCTAssertEqual(output.shape, [3, weight.shape[0], outSize.0, outSize.1])
        let exact = bruteForce(input, weight, bias, stride: stride, padding: padding, outSize: outSize)
        let largest = exact.map(abs).max()!
        let error = zip(output.data, exact).map { abs(Double($0) - $1) }.max()!
        XCTAssertLessThan(error / largest, tolerance, "\(weight.shape)")
    }

    /// Residual sums and ReLU6 fused into Winograd and packed-patch convolutions, in a graph where oneDNN's
    /// direct kernels and the plain kernels run the layers around them.
    func testFusedChainsMatchTheNodeByNodePath() throws {
        var random = TestRandom(state: 11)
        var nodes: [Node] = []
        func add(_ name: String, _ operation: QuantOps.Operation, _ inputs: [Int]) -> Int {
            nodes.append(Node(name: name, operation: operation, inputs: inputs))
            return nodes.count - 1
        }
        func norm(_ channels: Int) -> QuantOps.Operation {
            .batchNorm(BatchNorm(gamma: random.tensor([channels], scale: 0.2, offset: 1), beta: random.tensor([channels], scale: 0.1),
                                 runningMean: random.tensor([channels], scale: 0.1),
                                 runningVar: random.tensor([channels], scale: 0.2, offset: 1)))
        }
        let input = add("input", .input, [])
        let stem = add("stem", .conv(Conv2D(weight: random.tensor([40, 3, 3, 3], scale: 0.4), padding: (1, 1))), [input])
        let stemRelu = add("stem.relu", .relu, [add("stem.bn", norm(40), [stem])])
        let first = add("block.conv1", .conv(Conv2D(weight: random.tensor([40, 40, 3, 3], scale: 0.15), padding: (1, 1))), [stemRelu])
        let firstRelu = add("block.relu1", .relu, [add("block.bn1", norm(40), [first])])
        let second = add("block.conv2", .conv(Conv2D(weight: random.tensor([40, 40, 3, 3], scale: 0.15), padding: (1, 1))), [firstRelu])
        let sum = add("block.add", .add, [add("block.bn2", norm(40), [second]), stemRelu])
        let summed = add("block.relu2", .relu, [sum])
        let clipped = add("head.conv", .conv(Conv2D(weight: random.tensor([48, 40, 3, 3], scale: 0.15), padding: (1, 1))), [summed])
        let six = add("head.relu6", .relu6, [add("head.bn", norm(48), [clipped])])
        let expand = add("head.expand", .conv(Conv2D(weight: random.tensor([40, 48, 1, 1], scale: 0.3))), [six])
        let expanded = add("head.expand.relu6", .relu6, [add("head.expand.bn", norm(40), [expand])])
        let project = add("head.project", .conv(Conv2D(weight: random.tensor([48, 40, 1, 1], scale: 0.3))), [expanded])
        let joined = add("head.add", .add, [add("head.project.bn", norm(48), [project]), six])
        // A strided block on the packed-patch product: 3x3 stride 2 with its residual from a
        // strided 1x1 (oneDNN), summed and clamped in the product's epilogue.
        let widen = add("down.widen", .conv(Conv2D(weight: random.tensor([128, 48, 1, 1], scale: 0.3))), [joined])
        let wide = add("down.widen.relu", .relu, [widen])
        let strided = add("down.conv", .conv(Conv2D(weight: random.tensor([136, 128, 3, 3], scale: 0.05), stride: (2, 2),
                                                    padding: (1, 1))), [wide])
        let shortcut = add("down.shortcut", .conv(Conv2D(weight: random.tensor([136, 128, 1, 1], scale: 0.2), stride: (2, 2))), [wide])
        let down = add("down.relu6", .relu6, [add("down.add", .add, [add("down.bn", norm(136), [strided]), shortcut])])
        let flat = add("flatten", .flatten, [add("gap", .globalAveragePool, [down])])
        _ = add("fc", .linear(Linear(weight: random.tensor([10, 136]), bias: random.tensor([10]))), [flat])
        let model = Model(name: "chain", nodes: nodes, normalization: Normalization(mean: [0, 0, 0], std: [1, 1, 1]))

        let compiled = try CompiledModel(model)
        for batch in [4, 1] {
            let input = random.tensor([batch, 3, 18, 18], scale: 4)
            var clamped = 0, downClamped = 0
            let reference = try ForwardPass.reference(model, input: input) { index, tensor in
                if index == six { clamped += tensor.data.filter { $0 == 6 }.count }
                if index == down { downClamped += tensor.data.filter { $0 == 6 || $0 == 0 }.count }
            }
            // The input is large enough that the clamps matter: a kernel without them would fail.
            XCTAssertGreaterThan(clamped, 0)
            XCTAssertGreaterThan(downClamped, 0)
            let fast = try compiled.logits(input)
            XCTAssertEqual(compiled.ownKernelConvolutions, ["block.conv1": "winograd", "block.conv2": "winograd", "head.conv": "winograd",
                                                            "down.conv": "patch"])
            XCTAssertLessThan(EngineFixtures.relativeError(fast.data, reference.data), 1e-5)
        }
    }
}
