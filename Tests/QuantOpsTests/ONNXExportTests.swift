import Foundation
import ONNX
import XCTest
@testable import QuantOps

/// The ONNX exporter's graph: names, initializer types, where QDQ pairs go, int32 biases, the
/// integer weight codes of every precision, and atomic writing. scripts/check-onnx-export.py runs
/// the exported files in ONNX Runtime and OpenVINO.
final class ONNXExportTests: XCTestCase {
    /// A small CIFAR-style residual network: stem conv + BN + ReLU, a block with an option-A
    /// shortcut, global pooling and a classifier.
    static func residualModel() -> Model {
        var random = KernelTests.SplitMix(state: 21)
        var nodes: [Node] = []
        func add(_ name: String, _ operation: QuantOps.Operation, _ inputs: [Int]) -> Int {
            nodes.append(Node(name: name, operation: operation, inputs: inputs))
            return nodes.count - 1
        }
        func norm(_ channels: Int) -> QuantOps.Operation {
            .batchNorm(BatchNorm(gamma: random.tensor([channels]), beta: random.tensor([channels]),
                                 runningMean: random.tensor([channels]),
                                 runningVar: Tensor(shape: [channels], data: (0..<channels).map { _ in 0.5 + abs(random.next()) })))
        }
        let input = add("input", .input, [])
        let conv1 = add("conv1", .conv(Conv2D(weight: random.tensor([4, 3, 3, 3]), padding: (1, 1))), [input])
        let bn1 = add("bn1", norm(4), [conv1])
        let relu1 = add("relu1", .relu, [bn1])
        let conv2 = add("layer.conv", .conv(Conv2D(weight: random.tensor([8, 4, 3, 3]), stride: (2, 2), padding: (1, 1))), [relu1])
        let bn2 = add("layer.bn", norm(8), [conv2])
        let shortcut = add("layer.shortcut", .shortcutA(stride: 2, padChannels: 2), [relu1])
        let sum = add("layer.add", .add, [bn2, shortcut])
        let relu2 = add("layer.relu", .relu, [sum])
        let pool = add("avgpool", .globalAveragePool, [relu2])
        let flat = add("flatten", .flatten, [pool])
        _ = add("linear", .linear(Linear(weight: random.tensor([10, 8]), bias: random.tensor([10]))), [flat])
        return Model(name: "tiny-resnet", nodes: nodes,
                     normalization: Normalization(mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225]))
    }

    /// BN folded, weights 8-bit per channel, 8-bit asymmetric activations with ranges set.
    static func quantizedModel(activationBits: Int = 8, scheme: QuantizationScheme = .asymmetric) throws -> Model {
        var model = residualModel()
        try ModelTransforms.foldBatchNorm(&model)
        try ModelTransforms.quantize(&model, layers: Array(1...model.weightLayerNodes.count),
                                     with: .uniform(bits: 8, scheme: .symmetric, granularity: .channel))
        try ActivationQuantization.quantize(&model, with: ActivationQuantizer(bits: activationBits, scheme: scheme))
        var ranges: [String: ClosedRange<Float>] = [:]
        for point in ActivationQuantization.points(in: model) { ranges[point.name] = -1.5...4 }
        ActivationQuantization.setRanges(&model, ranges)
        return model
    }

    func initializer(_ graph: Onnx_GraphProto, _ name: String) throws -> Onnx_TensorProto {
        try XCTUnwrap(graph.initializer.first { $0.name == name }, "no initializer \(name)")
    }

    func producer(of value: String, in graph: Onnx_GraphProto) -> Onnx_NodeProto? {
        graph.node.first { $0.output.contains(value) }
    }

    func testFloatGraphKeepsNodeNamesAndStoresTheNormalization() throws {
        let (proto, summary) = try ONNXExporter.makeModel(Self.residualModel())
        XCTAssertEqual(proto.irVersion, 7)
        XCTAssertEqual(proto.opsetImport.map(\.version), [13])
        let graph = proto.graph
        XCTAssertEqual(graph.input.map(\.name), ["input"])
        XCTAssertEqual(graph.input[0].type.tensorType.shape.dim.map(\.dimParam), ["N", "", "", ""])
        XCTAssertEqual(graph.input[0].type.tensorType.shape.dim.dropFirst().map(\.dimValue), [3, 32, 32])
        XCTAssertEqual(graph.output.map(\.name), ["logits"])
        XCTAssertEqual(graph.output[0].type.tensorType.shape.dim[1].dimValue, 10)
        XCTAssertFalse(summary.isQuantized)

        let byName = Dictionary(uniqueKeysWithValues: graph.node.map { ($0.name, $0) })
        XCTAssertEqual(byName["conv1"]?.opType, "Conv")
        XCTAssertEqual(byName["bn1"]?.opType, "BatchNormalization")
        XCTAssertEqual(byName["layer.shortcut.slice"]?.opType, "Slice")
        XCTAssertEqual(byName["layer.shortcut"]?.opType, "Pad")
        XCTAssertEqual(byName["layer.add"]?.input, ["layer.bn", "layer.shortcut"])
        XCTAssertEqual(byName["linear"]?.opType, "Gemm")
        XCTAssertEqual(byName["linear"]?.output, ["logits"])
        XCTAssertEqual(byName["layer.conv"]?.attribute.first { $0.name == "strides" }?.ints, [2, 2])
        XCTAssertEqual(try initializer(graph, "layer.shortcut.steps").rawData.count, 16)
        XCTAssertFalse(graph.node.contains { $0.opType.contains("Quantize") })
        XCTAssertEqual(try initializer(graph, "conv1.weight").dataType, 1)

        let metadata = try XCTUnwrap(proto.metadataProps.first { $0.key == "qsh" })
        let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(metadata.value.utf8)) as? [String: Any])
        let mean = try XCTUnwrap(json["mean"] as? [Double]).map { Float($0) }
        let std = try XCTUnwrap(json["std"] as? [Double]).map { Float($0) }
        XCTAssertEqual(mean, [0.485, 0.456, 0.406])
        XCTAssertEqual(std, [0.229, 0.224, 0.225])

        // The bytes parse back as the same message.
        let bytes: Data = try proto.serializedBytes()
        XCTAssertEqual(try Onnx_ModelProto(serializedBytes: bytes), proto)
    }

    func testQDQPairsSitWhereTheSimulationRounds() throws {
        let model = try Self.quantizedModel()
        let (proto, summary) = try ONNXExporter.makeModel(model)
        let graph = proto.graph
        let points = ActivationQuantization.points(in: model)
        // The network input, the stem's fused conv+ReLU, the block's fused conv+add+ReLU, the pooling.
        XCTAssertEqual(points.map(\.name), ["input", "relu1", "layer.relu", "avgpool"])
        XCTAssertEqual(summary.quantizedActivations, 4)
        XCTAssertEqual(summary.integerWeightLayers, 3)
        XCTAssertEqual(summary.int32Biases, 3)
        let quantizeNodes = graph.node.filter { $0.opType == "QuantizeLinear" }
        XCTAssertEqual(quantizeNodes.map(\.name), points.map { $0.name + ".aq.quantize" })
        for point in points {
            let quantize = try XCTUnwrap(graph.node.first { $0.name == point.name + ".aq.quantize" })
            // The pair reads the producer's own output and is followed by its DequantizeLinear.
            XCTAssertEqual(quantize.input[0], point.name == "input" ? "input" : point.name)
            let dequantize = try XCTUnwrap(graph.node.first { $0.name == point.name + ".aq" })
            XCTAssertEqual(dequantize.opType, "DequantizeLinear")
            XCTAssertEqual(dequantize.input[0], quantize.output[0])
            XCTAssertEqual(try initializer(graph, point.name + ".aq.zero_point").dataType, 2, "asymmetric: uint8")
        }
        // Every conv and Gemm reads a dequantized activation (directly or through the shortcut
        // or flatten), dequantized int8 weights and a dequantized int32 bias; the logits stay float.
        for layer in ["conv1", "layer.conv", "linear"] {
            let node = try XCTUnwrap(graph.node.first { $0.name == layer })
            XCTAssertEqual(producer(of: node.input[1], in: graph)?.opType, "DequantizeLinear")
            XCTAssertEqual(try initializer(graph, layer + ".weight_quantized").dataType, 3, "int8 weights")
            XCTAssertEqual(try initializer(graph, layer + ".weight_scale").dims.count, 1, "per-channel scales")
            XCTAssertEqual(producer(of: node.input[1], in: graph)?.attribute.first { $0.name == "axis" }?.i, 0)
            XCTAssertEqual(try initializer(graph, layer + ".bias_quantized").dataType, 6, "int32 bias")
        }
        XCTAssertEqual(producer(of: "logits", in: graph)?.opType, "Gemm")
        // The residual add is fused into the block's conv: its input is the float conv output.
        XCTAssertEqual(graph.node.first { $0.name == "layer.add" }?.input[0], "layer.conv")
    }

    func testSymmetricAndLowBitActivationsAreClippedToTheirLevels() throws {
        let symmetric = try ONNXExporter.makeModel(Self.quantizedModel(scheme: .symmetric)).model.graph
        XCTAssertEqual(try initializer(symmetric, "relu1.aq.zero_point").dataType, 3, "symmetric: int8")
        // int8 holds -128, qsh's symmetric grid stops at -127: a Clip goes first.
        XCTAssertEqual(symmetric.node.first { $0.name == "relu1.aq.quantize" }?.input[0], "relu1.aq.clipped")

        let fourBit = try ONNXExporter.makeModel(Self.quantizedModel(activationBits: 4)).model.graph
        XCTAssertNotNil(fourBit.node.first { $0.name == "relu1.aq.clip" })

        // Wider than 8 bits: the float operations qsh performs, no QDQ.
        let (wide, summary) = try ONNXExporter.makeModel(Self.quantizedModel(activationBits: 16))
        XCTAssertEqual(summary.emulatedActivations, 4)
        XCTAssertFalse(wide.graph.node.contains { $0.opType == "QuantizeLinear" })
        XCTAssertEqual(wide.graph.node.first { $0.name == "relu1.aq" }?.opType, "Mul")
        XCTAssertEqual(wide.graph.node.first { $0.name == "relu1.aq.round" }?.opType, "Round")
    }

    func testEveryWeightPrecisionHasExactIntegerCodes() throws {
        var random = KernelTests.SplitMix(state: 5)
        let weight = random.tensor([6, 4, 3, 3])
        let quantizers: [WeightQuantizer] = [
            .ternary, .binary, .dorefa(bits: 2), .dorefa(bits: 6), .dorefa(bits: 8),
            .uniform(bits: 8, scheme: .symmetric, granularity: .channel),
            .uniform(bits: 4, scheme: .symmetric, granularity: .tensor),
            .uniform(bits: 8, scheme: .asymmetric, granularity: .channel),
            .uniform(bits: 12, scheme: .symmetric, granularity: .channel),
        ]
        for quantizer in quantizers {
            let (values, precision) = try quantizer.quantize(weight)
            let integer = try XCTUnwrap(try IntegerWeights(weight: values, precision: precision, place: "w"))
            let dequantized = integer.values()
            for (a, b) in zip(dequantized, values.data) {
                XCTAssertEqual(a, b, accuracy: 1e-6 * max(1, abs(b)), quantizer.label)
            }
            switch quantizer {
            case .dorefa(bits: 8), .uniform(bits: 12, _, _, _):
                XCTAssertEqual(integer.storage, .int32, quantizer.label)
                XCTAssertTrue(integer.zeroPoints.allSatisfy { $0 == 0 })
            default:
                XCTAssertEqual(integer.storage, .int8, quantizer.label)
                XCTAssertTrue(integer.codes.allSatisfy { (-128...127).contains($0) })
            }
            if case .ternary = quantizer { XCTAssertEqual(Set(integer.codes), [-1, 0, 1]) }
            if case .binary = quantizer { XCTAssertEqual(Set(integer.codes), [-1, 1]) }
            if case .dorefa(bits: 2) = quantizer { XCTAssertEqual(Set(integer.codes), [-3, -1, 1, 3]) }
        }
        // Weights moved off their grid are refused, naming the layer.
        let (values, precision) = try WeightQuantizer.ternary.quantize(weight)
        var moved = values
        moved.data[0] += 0.3 * (moved.data.map(abs).max() ?? 1)
        XCTAssertThrowsError(try IntegerWeights(weight: moved, precision: precision, place: "layer 3 (conv)")) { error in
            XCTAssertTrue(String(describing: error).contains("layer 3 (conv)"), String(describing: error))
        }
    }

    func testBiasesAreRoundedToTheInt32GridInSimulationAndExport() throws {
        let model = try Self.quantizedModel()
        let index = try XCTUnwrap(model.nodeIndex(named: "conv1"))
        let quantized = try XCTUnwrap(BiasQuantization.quantizedBias(of: index, in: model))
        guard case .conv(let conv) = model.nodes[index].operation, case .fakeQuantize(let input) = model.nodes[model.nodes[index].inputs[0]].operation,
              case .uniform(_, _, let grid) = conv.precision else { return XCTFail("unexpected graph") }
        let inputScale = try XCTUnwrap(input.grid()).scales[0]
        for j in 0..<conv.outChannels {
            XCTAssertEqual(quantized.scales[j], grid.scales[j] * inputScale)
            XCTAssertEqual(Float(quantized.codes[j]), (try XCTUnwrap(conv.bias).data[j] / quantized.scales[j]).rounded())
        }
        let simulated = BiasQuantization.simulated(model)
        guard case .conv(let rounded) = simulated.nodes[index].operation else { return XCTFail("not a conv") }
        XCTAssertEqual(rounded.bias?.data, quantized.values)
        // The linear layer's input comes through flatten from the pooling's quantizer.
        XCTAssertNotNil(BiasQuantization.quantizedBias(of: try XCTUnwrap(model.nodeIndex(named: "linear")), in: model))
        // Float weights or a float input keep a float bias.
        XCTAssertEqual(BiasQuantization.simulated(ActivationQuantization.removingQuantizers(model)), ActivationQuantization.removingQuantizers(model))

        // The exported int32 codes are the simulation's.
        let graph = try ONNXExporter.makeModel(model).model.graph
        let codes = try initializer(graph, "conv1.bias_quantized").rawData
        let decoded = stride(from: 0, to: codes.count, by: 4).map { offset in
            Int32(littleEndian: codes[codes.startIndex + offset ..< codes.startIndex + offset + 4].withUnsafeBytes { $0.loadUnaligned(as: Int32.self) })
        }
        XCTAssertEqual(decoded, quantized.codes)
    }

    func testUncalibratedQuantizerIsNamedAndNothingIsWritten() throws {
        var model = Self.residualModel()
        try ModelTransforms.foldBatchNorm(&model)
        try ActivationQuantization.quantize(&model, with: ActivationQuantizer(bits: 8, scheme: .asymmetric))
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("onnx-export-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let target = directory.appendingPathComponent("model.onnx")
        XCTAssertThrowsError(try ONNXExporter.write(model, to: target)) { error in
            let text = String(describing: error)
            XCTAssertTrue(text.contains("'input'") && text.contains("has no range yet"), text)
            XCTAssertEqual((error as? QuantizationError)?.unmet, .calibratedActivations, text)
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory.path), [], "no file, no temporary left")

        // An existing file is replaced only by a complete export.
        try Data("previous".utf8).write(to: target)
        XCTAssertThrowsError(try ONNXExporter.write(model, to: target))
        XCTAssertEqual(try String(contentsOf: target, encoding: .utf8), "previous")
        let summary = try ONNXExporter.write(Self.residualModel(), to: target)
        XCTAssertEqual(try Data(contentsOf: target).count, summary.bytes)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory.path), ["model.onnx"])
    }

    func testNumPyFileHeader() throws {
        let data = NumPyFile.encode([1, 2, 3, 4, 5, 6], shape: [2, 3])
        XCTAssertEqual(Array(data.prefix(8)), [0x93] + Array("NUMPY".utf8) + [1, 0])
        let headerLength = Int(data[8]) | Int(data[9]) << 8
        XCTAssertEqual((10 + headerLength) % 64, 0)
        let header = String(decoding: data[10..<(10 + headerLength)], as: UTF8.self)
        XCTAssertTrue(header.hasPrefix("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"), header)
        XCTAssertEqual(data.count, 10 + headerLength + 24)
    }
}
