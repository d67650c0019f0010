import Foundation
import ONNX
import SwiftProtobuf

/// What an export wrote.
public struct ONNXExportSummary: Sendable, Equatable {
    /// ONNX nodes in the graph.
    public var nodes: Int
    public var initializers: Int
    /// Weight layers stored as integer codes with DequantizeLinear.
    public var integerWeightLayers: Int
    /// Weight layers stored as float.
    public var floatWeightLayers: Int
    /// Activation quantizers written as QuantizeLinear -> DequantizeLinear pairs (8 bits or fewer).
    public var quantizedActivations: Int
    /// Activation quantizers wider than 8 bits, written as float Div -> Clip -> Round -> Mul.
    public var emulatedActivations: Int
    /// Biases stored as int32 with DequantizeLinear.
    public var int32Biases: Int
    public var bytes: Int

    public var isQuantized: Bool { integerWeightLayers + quantizedActivations + emulatedActivations > 0 }
}

/// Writes a `Model` as an ONNX graph (opset 13, IR version 7).
///
/// Float models become a plain graph: Conv, Gemm, BatchNormalization, Relu, Add, pooling, and the
/// option-A shortcut as Slice (with steps) followed by Pad. Quantized models use the standard QDQ
/// form: integer weights (`IntegerWeights`) behind DequantizeLinear (per output channel on axis 0
/// where the grid is per channel), a QuantizeLinear -> DequantizeLinear pair on every activation
/// qsh's simulation rounds (uint8 for asymmetric, int8 for symmetric quantizers; a Clip in front
/// where the quantizer's levels are narrower than the integer type), and int32 biases with scale
/// `S_w * S_in` where the layer's input is quantized (`BiasQuantization`). Activation quantizers
/// wider than 8 bits cannot be QDQ at opset 13 and are written as the float operations qsh
/// performs (Div, Clip, Round, Mul), so the file computes exactly what the simulation does.
///
/// The graph input is `input` (N x C x H x W, batch dynamic) and the output `logits`. Each model
/// node becomes the ONNX node of the same name that produces its value; helper nodes (weight
/// dequantization, the shortcut's slice, the quantize half of a QDQ pair) carry the model node's
/// name with a suffix. The normalization the input expects is stored in `metadata_props` under
/// the key `qsh` as JSON (`mean`, `std`, `input`, and what the caller adds).
public enum ONNXExporter {
    public static let opsetVersion: Int64 = 13
    public static let irVersion: Int64 = 7
    public static let metadataKey = "qsh"
    public static let inputName = "input"
    public static let outputName = "logits"

    /// The ONNX model for `model`; `details` go into the `qsh` metadata JSON next to the normalization.
    /// The image size defaults to the one the model was built for (`Model.inputShape`).
    public static func makeModel(_ model: Model, imageSize requestedSize: (height: Int, width: Int)? = nil,
                                 producerVersion: String = "", details: [String: Any] = [:]) throws
        -> (model: Onnx_ModelProto, summary: ONNXExportSummary)
    {
        let imageSize = requestedSize ?? (model.inputShape[1], model.inputShape[2])
        var builder = ONNXGraphBuilder(model: model)
        try builder.build(imageSize: imageSize)
        var proto = Onnx_ModelProto()
        proto.irVersion = irVersion
        var opset = Onnx_OperatorSetIdProto()
        opset.domain = ""
        opset.version = opsetVersion
        proto.opsetImport = [opset]
        proto.producerName = "qsh"
        proto.producerVersion = producerVersion
        proto.graph = builder.graph
        var entry = Onnx_StringStringEntryProto()
        entry.key = metadataKey
        entry.value = try metadataJSON(model, imageSize: imageSize, details: details)
        proto.metadataProps = [entry]
        var summary = builder.summary
        summary.nodes = builder.graph.node.count
        summary.initializers = builder.graph.initializer.count
        return (proto, summary)
    }

    /// Serializes the export of `model` and writes it to `url` atomically: the file appears whole,
    /// and nothing is written when the model cannot be exported.
    @discardableResult
    public static func write(_ model: Model, to url: URL, imageSize: (height: Int, width: Int)? = nil,
                             producerVersion: String = "", details: [String: Any] = [:]) throws -> ONNXExportSummary {
        let (proto, summary) = try makeModel(model, imageSize: imageSize, producerVersion: producerVersion, details: details)
        let data: Data = try proto.serializedBytes()
        do {
            try AtomicFile.write(data, to: url)
        } catch let failure as AtomicFile.Failure {
            throw QuantizationError(place: url.path, problem: failure.description)
        }
        var written = summary
        written.bytes = data.count
        return written
    }

    static func metadataJSON(_ model: Model, imageSize: (height: Int, width: Int), details: [String: Any]) throws -> String {
        var object = details
        object["mean"] = model.normalization.mean.map { Double($0) }
        object["std"] = model.normalization.std.map { Double($0) }
        object["input"] = [model.normalization.mean.count, imageSize.height, imageSize.width]
        object["model"] = model.name
        object["pixel_scale"] = "[0, 1]"
        let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
        return String(decoding: data, as: UTF8.self)
    }
}

/// Builds the graph node by node; every model node's value gets the node's name.
struct ONNXGraphBuilder {
    let model: Model
    var graph = Onnx_GraphProto()
    var summary = ONNXExportSummary(nodes: 0, initializers: 0, integerWeightLayers: 0, floatWeightLayers: 0,
                                    quantizedActivations: 0, emulatedActivations: 0, int32Biases: 0, bytes: 0)
    /// The ONNX value holding each model node's output.
    private var values: [String?]
    private let layerNumbers: [Int: Int]

    init(model: Model) {
        self.model = model
        values = [String?](repeating: nil, count: model.nodes.count)
        layerNumbers = Dictionary(uniqueKeysWithValues: model.weightLayerNodes.enumerated().map { ($1, $0 + 1) })
    }

    mutating func build(imageSize: (height: Int, width: Int)) throws {
        guard !model.nodes.isEmpty else {
            throw QuantizationError(place: model.name, problem: "the model has no nodes")
        }
        graph.name = model.name
        let channels = model.normalization.mean.count
        graph.input = [Self.valueInfo(ONNXExporter.inputName, dims: [.symbolic("N"), .fixed(channels), .fixed(imageSize.height), .fixed(imageSize.width)])]
        var sawInput = false
        for index in model.nodes.indices {
            let node = model.nodes[index]
            let output = index == model.nodes.count - 1 ? ONNXExporter.outputName : node.name
            if case .input = node.operation {
                guard !sawInput else { throw unsupported(index, "the model has more than one input node") }
                sawInput = true
                if index == model.nodes.count - 1 {
                    add("Identity", node.name, inputs: [ONNXExporter.inputName], output: output)
                } else {
                    values[index] = ONNXExporter.inputName
                }
                continue
            }
            let inputs = try node.inputs.map { source -> String in
                guard source >= 0, source < index, let value = values[source] else {
                    throw unsupported(index, "input \(source) is not an earlier node of the model")
                }
                return value
            }
            try emit(index, inputs: inputs, output: output)
            values[index] = output
        }
        guard sawInput else { throw unsupported(0, "the model has no input node") }
        var classes: Dimension = .symbolic("classes")
        if let last = model.weightLayerNodes.last, case .linear(let linear) = model.nodes[last].operation,
           let features = linear.weight.shape.first {
            classes = .fixed(features)
        }
        graph.output = [Self.valueInfo(ONNXExporter.outputName, dims: [.symbolic("N"), classes])]
    }

    // MARK: - Nodes

    private mutating func emit(_ index: Int, inputs: [String], output: String) throws {
        let node = model.nodes[index]
        let name = node.name
        func expect(_ count: Int) throws {
            guard inputs.count == count else { throw unsupported(index, "takes \(count) input(s), has \(inputs.count)") }
        }
        switch node.operation {
        case .input:
            break
        case .conv(let conv):
            try expect(1)
            let weight = try weightValue(index, weight: conv.weight, precision: conv.precision)
            var operands = [inputs[0], weight]
            if let bias = conv.bias { operands.append(try biasValue(index, bias: bias)) }
            add("Conv", name, inputs: operands, output: output, attributes: [
                .ints("kernel_shape", Array(conv.weight.shape.dropFirst(2))),
                .ints("strides", [conv.stride.0, conv.stride.1]),
                .ints("pads", [conv.padding.0, conv.padding.1, conv.trailingPadding.0, conv.trailingPadding.1]),
                .ints("dilations", [conv.dilation.0, conv.dilation.1]),
                .int("group", conv.groups),
            ])
        case .linear(let linear):
            try expect(1)
            guard linear.weight.rank == 2 else { throw unsupported(index, "a linear layer needs a 2-D weight") }
            let weight = try weightValue(index, weight: linear.weight, precision: linear.precision)
            var operands = [inputs[0], weight]
            if let bias = linear.bias { operands.append(try biasValue(index, bias: bias)) }
            add("Gemm", name, inputs: operands, output: output, attributes: [.int("transB", 1)])
        case .batchNorm(let norm):
            try expect(1)
            let operands = [inputs[0],
                            addFloat(name + ".weight", norm.gamma),
                            addFloat(name + ".bias", norm.beta),
                            addFloat(name + ".running_mean", norm.runningMean),
                            addFloat(name + ".running_var", norm.runningVar)]
            add("BatchNormalization", name, inputs: operands, output: output, attributes: [.float("epsilon", norm.epsilon)])
        case .relu:
            try expect(1)
            add("Relu", name, inputs: inputs, output: output)
        case .relu6:
            try expect(1)
            add("Clip", name, inputs: [inputs[0], addScalar(name + ".min", Float(0)), addScalar(name + ".max", Float(6))],
                output: output)
        case .add:
            try expect(2)
            add("Add", name, inputs: inputs, output: output)
        case .shortcutA(let stride, let padChannels):
            try expect(1)
            guard stride >= 1, padChannels >= 0 else { throw unsupported(index, "shortcut stride \(stride), padding \(padChannels)") }
            var current = inputs[0]
            if stride > 1 {
                let sliced = padChannels > 0 ? name + ".slice" : output
                add("Slice", padChannels > 0 ? name + ".slice" : name, inputs: [
                    current,
                    addInt64(name + ".starts", [0, 0]),
                    addInt64(name + ".ends", [Int64.max, Int64.max]),
                    addInt64(name + ".axes", [2, 3]),
                    addInt64(name + ".steps", [Int64(stride), Int64(stride)]),
                ], output: sliced)
                current = sliced
            }
            if padChannels > 0 {
                let p = Int64(padChannels)
                add("Pad", name, inputs: [current, addInt64(name + ".pads", [0, p, 0, 0, 0, p, 0, 0])], output: output,
                    attributes: [.string("mode", "constant")])
            } else if stride == 1 {
                add("Identity", name, inputs: [current], output: output)
            }
        case .averagePool(let pooling), .maxPool(let pooling):
            try expect(1)
            let isAverage: Bool
            if case .averagePool = node.operation { isAverage = true } else { isAverage = false }
            var attributes: [Attribute] = [
                .ints("kernel_shape", [pooling.kernel, pooling.kernel]),
                .ints("strides", [pooling.stride, pooling.stride]),
                .ints("pads", [pooling.padding, pooling.padding, pooling.padding, pooling.padding]),
            ]
            // qsh divides by the whole window, as PyTorch's default count_include_pad=True does.
            if isAverage { attributes.append(.int("count_include_pad", 1)) }
            add(isAverage ? "AveragePool" : "MaxPool", name, inputs: inputs, output: output, attributes: attributes)
        case .globalAveragePool:
            try expect(1)
            add("GlobalAveragePool", name, inputs: inputs, output: output)
        case .flatten:
            try expect(1)
            add("Flatten", name, inputs: inputs, output: output, attributes: [.int("axis", 1)])
        case .concat:
            add("Concat", name, inputs: inputs, output: output, attributes: [.int("axis", 1)])
        case .multiply:
            try expect(2)
            add("Mul", name, inputs: inputs, output: output)
        case .pointwise(let function):
            try expect(1)
            var attributes: [Attribute] = []
            switch function {
            case .hardSigmoid(let alpha, let beta): attributes = [.float("alpha", alpha), .float("beta", beta)]
            case .leakyRelu(let alpha): attributes = [.float("alpha", alpha)]
            case .sigmoid, .hardSwish: break
            }
            // HardSwish entered the standard operator set at opset 14; below it, x * HardSigmoid(x).
            if case .hardSwish = function {
                add("HardSigmoid", name + ".gate", inputs: inputs, output: name + ".gate",
                    attributes: [.float("alpha", 1.0 / 6), .float("beta", 0.5)])
                add("Mul", name, inputs: [inputs[0], name + ".gate"], output: output)
            } else {
                add(function.onnxOperator, name, inputs: inputs, output: output, attributes: attributes)
            }
        case .fakeQuantize(let quantizer):
            try expect(1)
            try activationQuantizer(index, quantizer, input: inputs[0], output: output)
        }
    }

    /// The weight operand: a float initializer, or integer codes behind DequantizeLinear.
    private mutating func weightValue(_ index: Int, weight: Tensor, precision: WeightPrecision) throws -> String {
        let name = model.nodes[index].name
        guard let integer = try IntegerWeights(weight: weight, precision: precision, place: layerPlace(index)) else {
            summary.floatWeightLayers += 1
            return addFloat(name + ".weight", weight)
        }
        summary.integerWeightLayers += 1
        let scaleShape = integer.isPerChannel ? [integer.scales.count] : []
        let codes: String
        let zeroPoint: String
        switch integer.storage {
        case .int8:
            codes = addTensor(name + ".weight_quantized", .int8, shape: weight.shape, bytes: integer.codes.map { UInt8(bitPattern: Int8($0)) })
            zeroPoint = addTensor(name + ".weight_zero_point", .int8, shape: scaleShape,
                                  bytes: integer.zeroPoints.map { UInt8(bitPattern: Int8($0)) })
        case .int32:
            codes = addTensor(name + ".weight_quantized", .int32, shape: weight.shape, bytes: Self.bytes(integer.codes))
            zeroPoint = addTensor(name + ".weight_zero_point", .int32, shape: scaleShape, bytes: Self.bytes(integer.zeroPoints))
        }
        let scale = addTensor(name + ".weight_scale", .float, shape: scaleShape, bytes: Self.bytes(integer.scales))
        add("DequantizeLinear", name + ".weight_dequantize", inputs: [codes, scale, zeroPoint], output: name + ".weight",
            attributes: integer.isPerChannel ? [.int("axis", 0)] : [])
        return name + ".weight"
    }

    /// The bias operand: int32 behind DequantizeLinear where `BiasQuantization` rounds it, else float.
    private mutating func biasValue(_ index: Int, bias: Tensor) throws -> String {
        let name = model.nodes[index].name
        guard let quantized = BiasQuantization.quantizedBias(of: index, in: model) else {
            return addFloat(name + ".bias", bias)
        }
        summary.int32Biases += 1
        let count = quantized.codes.count
        let codes = addTensor(name + ".bias_quantized", .int32, shape: [count], bytes: Self.bytes(quantized.codes))
        let scale = addTensor(name + ".bias_scale", .float, shape: [count], bytes: Self.bytes(quantized.scales))
        let zeroPoint = addTensor(name + ".bias_zero_point", .int32, shape: [count], bytes: Self.bytes([Int32](repeating: 0, count: count)))
        add("DequantizeLinear", name + ".bias_dequantize", inputs: [codes, scale, zeroPoint], output: name + ".bias",
            attributes: [.int("axis", 0)])
        return name + ".bias"
    }

    private mutating func activationQuantizer(_ index: Int, _ quantizer: ActivationQuantizer, input: String, output: String) throws {
        let name = model.nodes[index].name
        guard let grid = quantizer.grid() else {
            throw QuantizationError(place: activationPlace(index),
                                    problem: "the \(quantizer.label) activation quantizer has no range yet",
                                    unmet: .calibratedActivations)
        }
        let scale = grid.scales[0]
        let zeroPoint = Int(grid.zeroPoints[0])
        let lower = grid.levels.lowerBound - zeroPoint
        let upper = grid.levels.upperBound - zeroPoint
        guard scale > 0 else {
            // A degenerate range: qsh maps everything to 0.
            add("Mul", name, inputs: [input, addScalar(name + ".zero", Float(0))], output: output)
            summary.quantizedActivations += 1
            return
        }
        guard quantizer.bits <= 8 else {
            // x' = S * round(clamp(x / S, qmin - Z, qmax - Z)), in qsh's order of operations.
            let scaleValue = addScalar(name + ".scale", scale)
            add("Div", name + ".divide", inputs: [input, scaleValue], output: name + ".divided")
            add("Clip", name + ".clip", inputs: [name + ".divided", addScalar(name + ".min", Float(lower)), addScalar(name + ".max", Float(upper))],
                output: name + ".clipped")
            add("Round", name + ".round", inputs: [name + ".clipped"], output: name + ".rounded")
            add("Mul", name, inputs: [name + ".rounded", scaleValue], output: output)
            summary.emulatedActivations += 1
            return
        }
        let type: ElementType
        let zeroPointByte: UInt8
        let full: ClosedRange<Int>
        if grid.levels.lowerBound >= 0 {
            type = .uint8
            zeroPointByte = UInt8(clamping: zeroPoint)
            full = 0...255
        } else {
            type = .int8
            zeroPointByte = UInt8(bitPattern: Int8(clamping: zeroPoint))
            full = -128...127
        }
        var current = input
        if grid.levels != full {
            // Narrower levels than the integer type: clamp first, as qsh does before rounding.
            add("Clip", name + ".clip", inputs: [input, addScalar(name + ".min", scale * Float(lower)), addScalar(name + ".max", scale * Float(upper))],
                output: name + ".clipped")
            current = name + ".clipped"
        }
        let scaleValue = addScalar(name + ".scale", scale)
        let zeroPointValue = addTensor(name + ".zero_point", type, shape: [], bytes: [zeroPointByte])
        add("QuantizeLinear", name + ".quantize", inputs: [current, scaleValue, zeroPointValue], output: name + ".quantized")
        add("DequantizeLinear", name, inputs: [name + ".quantized", scaleValue, zeroPointValue], output: output)
        summary.quantizedActivations += 1
    }

    // MARK: - Places for errors

    private func layerPlace(_ index: Int) -> String {
        layerNumbers[index].map { "layer \($0) (\(model.nodes[index].name))" } ?? model.nodes[index].name
    }

    /// "the activation after layer 3 (layer1.0.relu1)" or the quantizer's producer.
    private func activationPlace(_ index: Int) -> String {
        let producer = model.nodes[index].inputs.first.flatMap { $0 >= 0 && $0 < model.nodes.count ? $0 : nil }
        let producerName = producer.map { model.nodes[$0].name } ?? model.nodes[index].name
        if let point = ActivationQuantization.points(in: model).first(where: { $0.name == producerName }), let layer = point.layer {
            let layerName = model.weightLayerNodes.count >= layer && layer > 0
                ? model.nodes[model.weightLayerNodes[layer - 1]].name : ""
            return layer == 0 ? "activation '\(producerName)' (the network input)"
                : "activation '\(producerName)' (output of layer \(layer), \(layerName))"
        }
        return "activation '\(producerName)'"
    }

    private func unsupported(_ index: Int, _ problem: String) -> QuantizationError {
        QuantizationError(place: model.nodes.indices.contains(index) ? model.nodes[index].name : model.name,
                          problem: problem, remedy: "this model state cannot be exported to ONNX")
    }

    // MARK: - Protobuf helpers

    enum ElementType: Int32 {
        case float = 1
        case uint8 = 2
        case int8 = 3
        case int32 = 6
        case int64 = 7
    }

    enum Dimension {
        case fixed(Int)
        case symbolic(String)
    }

    enum Attribute {
        case int(String, Int)
        case ints(String, [Int])
        case float(String, Float)
        case string(String, String)

        var proto: Onnx_AttributeProto {
            var attribute = Onnx_AttributeProto()
            switch self {
            case .int(let name, let value):
                attribute.name = name
                attribute.type = .int
                attribute.i = Int64(value)
            case .ints(let name, let values):
                attribute.name = name
                attribute.type = .ints
                attribute.ints = values.map(Int64.init)
            case .float(let name, let value):
                attribute.name = name
                attribute.type = .float
                attribute.f = value
            case .string(let name, let value):
                attribute.name = name
                attribute.type = .string
                attribute.s = Data(value.utf8)
            }
            return attribute
        }
    }

    private mutating func add(_ opType: String, _ name: String, inputs: [String], output: String, attributes: [Attribute] = []) {
        var node = Onnx_NodeProto()
        node.opType = opType
        node.name = name
        node.input = inputs
        node.output = [output]
        node.attribute = attributes.map(\.proto)
        graph.node.append(node)
    }

    @discardableResult
    private mutating func addTensor(_ name: String, _ type: ElementType, shape: [Int], bytes: [UInt8]) -> String {
        var tensor = Onnx_TensorProto()
        tensor.name = name
        tensor.dataType = type.rawValue
        tensor.dims = shape.map(Int64.init)
        tensor.rawData = Data(bytes)
        graph.initializer.append(tensor)
        return name
    }

    private mutating func addFloat(_ name: String, _ tensor: Tensor) -> String {
        addTensor(name, .float, shape: tensor.shape, bytes: Self.bytes(tensor.data))
    }

    private mutating func addScalar(_ name: String, _ value: Float) -> String {
        if graph.initializer.contains(where: { $0.name == name }) { return name }
        return addTensor(name, .float, shape: [], bytes: Self.bytes([value]))
    }

    private mutating func addInt64(_ name: String, _ values: [Int64]) -> String {
        addTensor(name, .int64, shape: [values.count], bytes: Self.bytes(values))
    }

    /// Little-endian bytes, as ONNX raw_data stores them.
    static func bytes<T: FixedWidthInteger>(_ values: [T]) -> [UInt8] {
        var result: [UInt8] = []
        result.reserveCapacity(values.count * MemoryLayout<T>.size)
        for value in values {
            withUnsafeBytes(of: value.littleEndian) { result.append(contentsOf: $0) }
        }
        return result
    }

    static func bytes(_ values: [Float]) -> [UInt8] {
        bytes(values.map(\.bitPattern))
    }

    static func valueInfo(_ name: String, dims: [Dimension]) -> Onnx_ValueInfoProto {
        var info = Onnx_ValueInfoProto()
        info.name = name
        var tensorType = Onnx_TypeProto.Tensor()
        tensorType.elemType = ElementType.float.rawValue
        var shape = Onnx_TensorShapeProto()
        shape.dim = dims.map { dimension in
            var proto = Onnx_TensorShapeProto.Dimension()
            switch dimension {
            case .fixed(let value): proto.dimValue = Int64(value)
            case .symbolic(let name): proto.dimParam = name
            }
            return proto
        }
        tensorType.shape = shape
        var type = Onnx_TypeProto()
        type.tensorType = tensorType
        info.type = type
        return info
    }
}
