import XCTest
@testable import QuantOps

/// `WeightLayer`: one view over the parameters of conv and linear layers.
final class WeightLayerTests: XCTestCase {
    static let conv = Conv2D(weight: Tensor(shape: [2, 1, 1, 1], data: [1, -2]), bias: Tensor(shape: [2], data: [0.5, 0.25]),
                             stride: (2, 2), padding: (1, 1), groups: 1)
    static let linear = Linear(weight: Tensor(shape: [3, 2], data: [1, 2, 3, 4, 5, 6]))

    func testTheViewReadsConvAndLinearAlikeAndNothingElse() {
        let conv = Operation.conv(Self.conv).weightLayer
        XCTAssertEqual(conv?.kind, .conv)
        XCTAssertEqual(conv?.weight, Self.conv.weight)
        XCTAssertEqual(conv?.bias, Self.conv.bias)
        XCTAssertEqual(conv?.outputChannels, 2)
        XCTAssertEqual(conv?.parameterCount, 4)
        let linear = Operation.linear(Self.linear).weightLayer
        XCTAssertEqual(linear?.kind, .linear)
        XCTAssertNil(linear?.bias)
        XCTAssertEqual(linear?.outputChannels, 3)
        XCTAssertEqual(linear?.parameterCount, 6)
        XCTAssertNil(Operation.relu.weightLayer)
        XCTAssertNil(Operation.flatten.weightLayer)
    }

    func testWritingThroughTheViewKeepsTheConvolutionsGeometry() throws {
        var operation = Operation.conv(Self.conv)
        let precision = WeightPrecision.ternary(alpha: 2)
        operation.weightLayer?.weight = Tensor(shape: [2, 1, 1, 1], data: [2, -2])
        operation.weightLayer?.precision = precision
        operation.weightLayer?.bias = nil
        guard case .conv(let written) = operation else { return XCTFail("\(operation) is no longer a conv") }
        XCTAssertEqual(written.weight.data, [2, -2])
        XCTAssertEqual(written.precision, precision)
        XCTAssertNil(written.bias)
        XCTAssertTrue(written.stride == (2, 2) && written.padding == (1, 1) && written.groups == 1)

        var linear = Operation.linear(Self.linear)
        linear.weightLayer?.bias = Tensor(shape: [3], data: [1, 1, 1])
        XCTAssertEqual(linear, .linear(Linear(weight: Self.linear.weight, bias: Tensor(shape: [3], data: [1, 1, 1]))))
    }

    func testWritesToOtherOperationsAndWritingNilChangeNothing() {
        var relu = Operation.relu
        relu.weightLayer?.weight = Tensor(shape: [1], data: [1])
        XCTAssertEqual(relu, .relu)
        var conv = Operation.conv(Self.conv)
        conv.weightLayer = nil
        XCTAssertEqual(conv, .conv(Self.conv))
    }

    func testModelSummariesReadBothKindsThroughTheView() {
        let model = Model(name: "pair", nodes: [
            Node(name: "conv", operation: .conv(Self.conv), inputs: [-1]),
            Node(name: "flatten", operation: .flatten, inputs: [0]),
            Node(name: "fc", operation: .linear(Self.linear), inputs: [1]),
        ], normalization: Normalization(mean: [0], std: [1]), inputShape: [1, 2, 2])
        XCTAssertEqual(model.weightLayers.map(\.kind), ["conv", "linear"])
        XCTAssertEqual(model.weightLayers.map(\.parameterCount), [4, 6])
        XCTAssertEqual(model.parameterCount, 10)
        XCTAssertEqual(Set(model.stateDict().keys), ["conv.weight", "conv.bias", "fc.weight"])
        XCTAssertFalse(model.hasQuantizedWeights)

        var quantized = model
        quantized.nodes[2].operation.weightLayer?.precision = .binary(alpha: 1)
        XCTAssertTrue(quantized.hasQuantizedWeights)
        XCTAssertEqual(quantized.weightLayers.map(\.precision.isQuantized), [false, true])
    }
}
