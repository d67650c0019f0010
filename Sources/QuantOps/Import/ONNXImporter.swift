import Foundation
import ONNX
import SwiftProtobuf

/// Why an ONNX file could not become a model: the file, the node where reading stopped (its
/// name and operator), what was wrong and what to do. Nothing is half-loaded: the importer
/// builds the whole model or throws.
public struct ONNXImportError: Error, CustomStringConvertible, Equatable {
    public var file: String
    /// "NAME (OpType)" of the node, when one is at fault.
    public var node: String?
    public var problem: String
    public var remedy: String?

    public var description: String {
        "\(file): " + (node.map { "node \($0): " } ?? "") + problem
    }
}

/// What the caller knows that the file may not say.
public struct ONNXImportOptions: Sendable, Equatable {
    /// Height and width of the input when the graph leaves them symbolic.
    public var imageSize: Int?
    /// The normalization the network expects; otherwise the file's `qsh` metadata, otherwise none.
    public var normalization: Normalization?
    /// The most elements one image's input or any activation may have; larger graphs are refused.
    public var activationLimit: Int
    /// The most multiply-adds (and pooling-window reads) one image may cost; costlier graphs are
    /// refused before the check run that ends every import.
    public var workLimit: Int

    public init(imageSize: Int? = nil, normalization: Normalization? = nil, activationLimit: Int = ONNXImporter.activationLimit,
                workLimit: Int = ONNXImporter.workLimit) {
        self.imageSize = imageSize
        self.normalization = normalization
        self.activationLimit = activationLimit
        self.workLimit = workLimit
    }
}

/// A model read from ONNX, and how it was read.
public struct ONNXImport: Sendable {
    public enum NormalizationSource: String, Sendable {
        /// Given by the caller (`mean=`/`std=`).
        case options
        /// The `qsh` metadata entry a qsh export writes.
        case metadata
        /// Neither: images are fed scaled to [0, 1].
        case none
    }

    public var model: Model
    public var opset: Int
    public var normalizationSource: NormalizationSource
    /// Nodes of shape arithmetic and constants evaluated at load.
    public var foldedNodes: Int
    /// ONNX nodes that became no model node (Identity, Dropout, a Pad taken into a Conv).
    public var absorbedNodes: Int
}

/// Reads an ONNX CNN into a `Model`: convolutions, dense layers, batch norms, pooling and the
/// nonlinearities of ResNets, VGGs, MobileNets, DenseNets and squeeze-excite networks become
/// model nodes; the shape arithmetic exporters emit is evaluated at load for the static input
/// size (`ONNXFolding`); zero padding in front of a convolution becomes the convolution's own
/// (possibly asymmetric) padding.
///
/// Node names come from the graph: a layer with weights is named after its weight initializer
/// (`layer1.0.conv1.weight` gives `layer1.0.conv1`, PyTorch's module name, so `save` writes
/// the keys a PyTorch user expects); other nodes keep their ONNX node names.
public enum ONNXImporter {
    public static let supportedOpsets: ClosedRange<Int> = 11 ... 21
    /// The default `ONNXImportOptions.activationLimit`: 2^26 elements (256 MB) per image, 80 times
    /// the largest activation of a ResNet-50 at 224x224.
    public static let activationLimit = 1 << 26
    /// The default `ONNXImportOptions.workLimit`: 2^40 multiply-adds per image, about 270 times
    /// a ResNet-50's 4.1 billion at 224x224.
    public static let workLimit = 1 << 40

    /// Operators that become model nodes.
    public static let modelOperators = [
        "Conv", "Gemm", "MatMul", "BatchNormalization", "Relu", "Clip", "LeakyRelu", "Sigmoid", "HardSigmoid",
        "HardSwish", "Add", "Sub", "Mul", "Div", "Concat", "MaxPool", "AveragePool", "GlobalAveragePool", "ReduceMean",
        "Flatten", "Reshape", "Squeeze", "Pad", "Identity", "Dropout",
    ]

    public static func load(contentsOf url: URL, name: String, options: ONNXImportOptions = ONNXImportOptions()) throws -> ONNXImport {
        let file = url.lastPathComponent
        let data: Data
        do {
            data = try Data(contentsOf: url)
        } catch {
            throw ONNXImportError(file: url.path, problem: "cannot be read (\(error.localizedDescription))", remedy: "check the path")
        }
        return try read(data, file: file, name: name, options: options, folder: url.deletingLastPathComponent())
    }

    /// `folder` holds the files of tensors the model keeps as external data.
    public static func read(_ data: Data, file: String, name: String, options: ONNXImportOptions = ONNXImportOptions(),
                            folder: URL? = nil) throws -> ONNXImport {
        let proto: Onnx_ModelProto
        do {
            proto = try Onnx_ModelProto(serializedBytes: data)
        } catch {
            throw ONNXImportError(file: file, problem: "is not an ONNX model (\(error))",
                                  remedy: "check that the file is complete; torch.onnx.export writes a model that qsh reads")
        }
        var importer = ONNXGraphImporter(file: file, name: name, options: options, folder: folder)
        return try importer.run(proto)
    }
}

/// The state of one import: values by tensor name, the model nodes built so far.
struct ONNXGraphImporter {
    /// A tensor computed from the image at run time.
    struct Dynamic {
        /// The model node that produces it.
        var node: Int
        /// NCHW or (N, features); the batch is -1.
        var shape: [Int]
        /// Zero padding (top, left, bottom, right) a Pad node asked for, taken by the next Conv.
        var pendingPad: [Int]? = nil
    }

    enum Value {
        case constant(ONNXConstant)
        case dynamic(Dynamic)
    }

    let file: String
    let name: String
    let options: ONNXImportOptions
    let folder: URL?
    var values: [String: Value] = [:]
    var nodes: [Node] = []
    var usedNames: Set<String> = []
    var readers: [String: Int] = [:]
    /// The batch size the graph's input declares, when fixed (exports traced at batch 1 write
    /// it into their Reshapes); qsh runs any batch size.
    var declaredBatch: Int?
    var opset = 0
    /// Multiply-adds per image of the nodes emitted so far.
    var work = 0
    var folded = 0
    var absorbed = 0

    init(file: String, name: String, options: ONNXImportOptions, folder: URL?) {
        self.file = file
        self.name = name
        self.options = options
        self.folder = folder
    }

    mutating func run(_ proto: Onnx_ModelProto) throws -> ONNXImport {
        let domains = proto.opsetImport.filter { $0.domain.isEmpty || $0.domain == "ai.onnx" }
        guard let version = domains.map(\.version).max() else {
            throw failure("declares no version of the standard operator set", remedy: "export with opset 11 to 21")
        }
        opset = Int(version)
        guard ONNXImporter.supportedOpsets.contains(opset) else {
            throw failure("uses opset \(opset); qsh reads opsets \(ONNXImporter.supportedOpsets.lowerBound) to \(ONNXImporter.supportedOpsets.upperBound)",
                          remedy: "export again with opset_version=17 (torch.onnx.export), or convert with onnx.version_converter")
        }
        let graph = proto.graph
        for initializer in graph.initializer {
            values[initializer.name] = .constant(try constant(initializer, node: nil))
        }
        for node in graph.node { for input in node.input where !input.isEmpty { readers[input, default: 0] += 1 } }
        for output in graph.output { readers[output.name, default: 0] += 1 }
        let inputShape = try addInput(graph)
        for node in graph.node {
            try importNode(node)
        }
        guard graph.output.count == 1, let outputName = graph.output.first?.name else {
            throw failure("has \(graph.output.count) outputs; qsh reads classifiers with one output (the logits)",
                          remedy: "export only the logits")
        }
        guard case .dynamic(let output)? = values[outputName] else {
            throw failure("output '\(outputName)' is not computed from the input image")
        }
        guard output.pendingPad == nil else { throw failure("output '\(outputName)' is a Pad, which qsh runs only in front of a Conv") }
        guard output.shape.count == 2 else {
            throw failure("output '\(outputName)' has shape \(describe(output.shape)); qsh expects logits (N, classes)",
                          remedy: "end the network with Flatten and a Linear/Gemm layer")
        }
        var model = Model(name: name, nodes: pruned(to: output.node), normalization: try normalization(proto, channels: inputShape[0]),
                          inputShape: inputShape)
        model.name = name
        try check(model)
        return ONNXImport(model: model, opset: opset, normalizationSource: normalizationSource(proto),
                          foldedNodes: folded, absorbedNodes: absorbed)
    }

    // MARK: - Graph input, output, normalization

    private mutating func addInput(_ graph: Onnx_GraphProto) throws -> [Int] {
        let initializers = Set(graph.initializer.map(\.name))
        let inputs = graph.input.filter { !initializers.contains($0.name) }
        guard inputs.count == 1, let input = inputs.first else {
            throw failure("has \(inputs.count) inputs besides its weights; qsh feeds one image batch",
                          remedy: "export a model that takes one (N, 3, H, W) tensor")
        }
        let dims = input.type.tensorType.shape.dim
        guard dims.count == 4 else {
            throw failure("input '\(input.name)' has rank \(dims.count); qsh feeds images as (N, C, H, W)")
        }
        if case .dimValue(let value)? = dims[0].value, value > 0 { declaredBatch = Int(value) }
        var shape: [Int] = []
        for (axis, dim) in dims.enumerated().dropFirst() {
            if case .dimValue(let value)? = dim.value, value > 0 {
                shape.append(Int(value))
            } else if axis >= 2, let size = options.imageSize {
                shape.append(size)
            } else {
                throw failure("input '\(input.name)' leaves dimension \(axis) symbolic",
                              remedy: axis >= 2 ? "give the image size: load NAME from \"\(file)\" size=224" : "export with a fixed channel count")
            }
        }
        guard shape[0] >= 1, shape[0] <= 4096, shape[1] <= 16384, shape[2] <= 16384,
              shape[0] * shape[1] * shape[2] <= options.activationLimit else {
            throw failure("input '\(input.name)' has shape \(describe([-1] + shape)), which qsh does not take")
        }
        if let size = options.imageSize, size != shape[1] || size != shape[2] {
            throw failure("input '\(input.name)' is fixed at \(shape[1])x\(shape[2]), not size=\(size)",
                          remedy: "leave out size=, or export with a symbolic image size")
        }
        let index = append(Node(name: input.name.isEmpty ? "input" : input.name, operation: .input, inputs: []))
        values[input.name] = .dynamic(Dynamic(node: index, shape: [-1] + shape))
        return shape
    }

    private func normalizationSource(_ proto: Onnx_ModelProto) -> ONNXImport.NormalizationSource {
        if options.normalization != nil { return .options }
        return metadataNormalization(proto) != nil ? .metadata : .none
    }

    private func normalization(_ proto: Onnx_ModelProto, channels: Int) throws -> Normalization {
        let chosen = options.normalization ?? metadataNormalization(proto)
            ?? Normalization(mean: [Float](repeating: 0, count: channels), std: [Float](repeating: 1, count: channels))
        func expand(_ values: [Float]) -> [Float] { values.count == 1 ? [Float](repeating: values[0], count: channels) : values }
        let result = Normalization(mean: expand(chosen.mean), std: expand(chosen.std))
        guard result.mean.count == channels, result.std.count == channels, result.std.allSatisfy({ $0 > 0 && $0.isFinite }) else {
            throw failure("normalization mean \(chosen.mean), std \(chosen.std) does not fit \(channels) input channels",
                          remedy: "give one value, or one per channel, and positive std")
        }
        return result
    }

    /// The `mean`/`std` a qsh export stores in its `qsh` metadata entry.
    private func metadataNormalization(_ proto: Onnx_ModelProto) -> Normalization? {
        guard let entry = proto.metadataProps.first(where: { $0.key == ONNXExporter.metadataKey }),
              let object = try? JSONSerialization.jsonObject(with: Data(entry.value.utf8)) as? [String: Any],
              let mean = object["mean"] as? [Double], let std = object["std"] as? [Double] else { return nil }
        return Normalization(mean: mean.map { Float($0) }, std: std.map { Float($0) })
    }

    // MARK: - Nodes

    private mutating func importNode(_ node: Onnx_NodeProto) throws {
        let label = nodeLabel(node)
        do {
            guard node.domain.isEmpty || node.domain == "ai.onnx" else {
                throw ONNXFolding.Problem("is in operator domain '\(node.domain)', which qsh does not read",
                                          remedy: "export with standard ONNX operators only")
            }
            var inputs: [Value?] = []
            for input in node.input {
                if input.isEmpty { inputs.append(nil); continue }
                guard let value = values[input] else {
                    throw ONNXFolding.Problem("reads '\(input)', which no earlier node or initializer produces",
                                              remedy: "the graph is damaged or not in topological order (a cycle); export it again")
                }
                inputs.append(value)
            }
            let attributes = ONNXAttributes(node)
            let constants = inputs.map { value -> ONNXConstant? in
                if case .constant(let constant)? = value { return constant }
                return nil
            }
            let allConstant = zip(inputs, constants).allSatisfy { $0.0 == nil || $0.1 != nil }
            if node.opType == "Shape", case .dynamic(let dynamic)? = inputs.first {
                let dims = dynamic.shape.map { $0 < 0 ? ONNXConstant.batchSymbol : Double($0) }
                try define(node, .constant(ONNXFolding.shape(of: dims, attributes: attributes)))
                folded += 1
                return
            }
            if allConstant, ONNXFolding.operators.contains(node.opType) {
                let value = try ONNXFolding.evaluate(node, constants, attributes: attributes, opset: opset)
                // Folding costs as many steps as it writes elements; a chain of large folded
                // tensors counts against the same limit as the network's arithmetic.
                try addFoldingWork(elements: value.count, node)
                try define(node, .constant(value))
                folded += 1
                return
            }
            guard ONNXImporter.modelOperators.contains(node.opType) else {
                throw ONNXFolding.Problem("\(node.opType) is not an operator qsh runs",
                                          remedy: "supported: " + ONNXImporter.modelOperators.joined(separator: ", ")
                                              + "; shape arithmetic (" + ONNXFolding.operators.sorted().joined(separator: ", ") + ") on constants")
            }
            try importModelNode(node, inputs: inputs, attributes: attributes)
        } catch let problem as ONNXFolding.Problem {
            throw ONNXImportError(file: file, node: label, problem: problem.problem, remedy: problem.remedy)
        }
    }

    /// The PyTorch module path of an exported node: "/layer1/layer1.0/conv1/Conv" is
    /// "layer1.0.conv1" (each scope either extends the previous one or is relative to it);
    /// names that are not scope paths stay as they are, an unnamed node takes its output's name.
    static func moduleName(_ node: Onnx_NodeProto) -> String {
        guard !node.name.isEmpty else { return node.output.first.map { $0.isEmpty ? node.opType : $0 } ?? node.opType }
        guard node.name.hasPrefix("/") else { return node.name }
        let scopes = node.name.split(separator: "/").dropLast().map(String.init)
        guard var name = scopes.first else { return String(node.name.dropFirst()) }
        for scope in scopes.dropFirst() {
            name = scope.hasPrefix(name + ".") ? scope : name + "." + scope
        }
        return name
    }

    private func nodeLabel(_ node: Onnx_NodeProto) -> String {
        let shown = node.name.isEmpty ? (node.output.first ?? "?") : node.name
        return "'\(shown)' (\(node.opType))"
    }

    private mutating func define(_ node: Onnx_NodeProto, _ value: Value) throws {
        guard let output = node.output.first, !output.isEmpty else { throw ONNXFolding.Problem("has no output") }
        values[output] = value
    }

    /// The dynamic input at `index`; a pending Pad only where the node takes it.
    private func dynamic(_ inputs: [Value?], _ index: Int = 0, _ node: Onnx_NodeProto, allowPad: Bool = false) throws -> Dynamic {
        guard index < inputs.count, case .dynamic(let value)? = inputs[index] else {
            throw ONNXFolding.Problem("input \(index + 1) must be computed from the image; qsh does not run \(node.opType) on constants")
        }
        if value.pendingPad != nil && !allowPad {
            throw ONNXFolding.Problem("reads a Pad; qsh runs zero padding only in front of a Conv",
                                      remedy: "pad inside the convolution (padding=) or the pooling layer instead")
        }
        return value
    }

    private func constantInput(_ inputs: [Value?], _ index: Int, _ what: String) throws -> ONNXConstant? {
        guard index < inputs.count, let value = inputs[index] else { return nil }
        guard case .constant(let constant) = value else {
            throw ONNXFolding.Problem("\(what) must be a constant (an initializer), not computed from the image")
        }
        return constant
    }

    private func requiredConstant(_ inputs: [Value?], _ index: Int, _ what: String) throws -> ONNXConstant {
        guard let value = try constantInput(inputs, index, what) else { throw ONNXFolding.Problem("\(what) is missing") }
        return value
    }

    @discardableResult
    private mutating func append(_ node: Node) -> Int {
        var unique = node
        var suffix = 2
        while usedNames.contains(unique.name) {
            unique.name = "\(node.name)_\(suffix)"
            suffix += 1
        }
        usedNames.insert(unique.name)
        nodes.append(unique)
        return nodes.count - 1
    }

    /// A model node for `onnx`, named after its weight initializer when it has one.
    private mutating func emit(_ onnx: Onnx_NodeProto, _ operation: QuantOps.Operation, inputs: [Int], shape: [Int],
                               weight: String? = nil) throws {
        // One image's activations stay within what any CNN needs, so a hostile file cannot make
        // the check at the end (and every evaluation) allocate without bound.
        let outputElements = try ONNXFolding.elementCount(shape.map { max($0, 1) }, "the output of \(onnx.opType)",
                                                          limit: options.activationLimit)
        try addWork(of: operation, outputElements: outputElements, onnx)
        var nodeName = Self.moduleName(onnx)
        if let weight, !weight.isEmpty, !weight.hasPrefix("onnx::") {
            nodeName = weight.hasSuffix(".weight") ? String(weight.dropLast(".weight".count)) : weight
        }
        let index = append(Node(name: nodeName, operation: operation, inputs: inputs))
        try define(onnx, .dynamic(Dynamic(node: index, shape: shape)))
    }

    /// Counts what `operation` costs per image, so that a file cannot make the check run (and
    /// every evaluation) compute without bound through small tensors and large kernels.
    private mutating func addFoldingWork(elements: Int, _ onnx: Onnx_NodeProto) throws {
        let (total, overflow) = work.addingReportingOverflow(elements)
        guard !overflow, total <= options.workLimit else {
            throw ONNXFolding.Problem("\(onnx.opType) takes the import past \(options.workLimit) steps of constant folding and arithmetic",
                                      remedy: "fold the graph's constants before exporting it, or import a smaller model")
        }
        work = total
    }

    private mutating func addWork(of operation: QuantOps.Operation, outputElements: Int, _ onnx: Onnx_NodeProto) throws {
        let perOutput: Int
        switch operation {
        case .conv(let conv): perOutput = conv.weight.count / max(conv.weight.shape[0], 1)
        case .linear(let linear): perOutput = linear.weight.count / max(linear.weight.shape[0], 1)
        case .averagePool(let pooling), .maxPool(let pooling): perOutput = pooling.kernel * pooling.kernel
        default: perOutput = 1
        }
        let (product, overflow) = outputElements.multipliedReportingOverflow(by: max(perOutput, 1))
        let (total, overflowTotal) = work.addingReportingOverflow(product)
        guard !overflow, !overflowTotal, total <= options.workLimit else {
            throw ONNXFolding.Problem("\(onnx.opType) takes the network past \(options.workLimit) multiply-adds per image",
                                      remedy: "import a smaller model or a smaller image size")
        }
        work = total
    }

    private mutating func importModelNode(_ node: Onnx_NodeProto, inputs: [Value?], attributes: ONNXAttributes) throws {
        switch node.opType {
        case "Identity", "Dropout":
            _ = try dynamic(inputs, 0, node, allowPad: true)
            if node.opType == "Dropout", node.output.count > 1, !node.output[1].isEmpty, readers[node.output[1], default: 0] > 0 {
                throw ONNXFolding.Problem("Dropout's mask is read; qsh runs inference, where there is no mask")
            }
            try define(node, inputs[0]!)
            absorbed += 1
        case "Conv":
            try importConv(node, inputs: inputs, attributes: attributes)
        case "Gemm", "MatMul":
            try importDense(node, inputs: inputs, attributes: attributes)
        case "BatchNormalization":
            let x = try dynamic(inputs, 0, node)
            guard x.shape.count >= 2 else { throw ONNXFolding.Problem("needs an (N, C, ...) input, got \(describe(x.shape))") }
            if attributes.int("training_mode") == 1 || node.output.dropFirst().contains(where: { !$0.isEmpty && readers[$0, default: 0] > 0 }) {
                throw ONNXFolding.Problem("is in training mode", remedy: "export the model after model.eval()")
            }
            let channels = x.shape[1]
            let parts = try (1 ... 4).map { index -> Tensor in
                let value = try requiredConstant(inputs, index, ["", "scale", "bias", "mean", "variance"][index])
                guard value.count == channels else {
                    throw ONNXFolding.Problem("has \(value.count) values of \(["", "scale", "bias", "mean", "variance"][index]) for \(channels) channels")
                }
                return Tensor(shape: [channels], data: value.floats())
            }
            let norm = BatchNorm(gamma: parts[0], beta: parts[1], runningMean: parts[2], runningVar: parts[3],
                                 epsilon: attributes.float("epsilon") ?? 1e-5)
            try emit(node, .batchNorm(norm), inputs: [x.node], shape: x.shape, weight: node.input[1])
        case "Relu":
            let x = try dynamic(inputs, 0, node)
            try emit(node, .relu, inputs: [x.node], shape: x.shape)
        case "Clip":
            let x = try dynamic(inputs, 0, node)
            let lower = try constantInput(inputs, 1, "Clip's min").map { try $0.scalar("Clip's min") } ?? attributes.float("min").map(Double.init)
            let upper = try constantInput(inputs, 2, "Clip's max").map { try $0.scalar("Clip's max") } ?? attributes.float("max").map(Double.init)
            if lower == 0, upper == 6 {
                try emit(node, .relu6, inputs: [x.node], shape: x.shape)
            } else if lower == 0, upper == nil || upper == .infinity {
                try emit(node, .relu, inputs: [x.node], shape: x.shape)
            } else {
                throw ONNXFolding.Problem("clips to [\(lower.map { "\($0)" } ?? "-inf"), \(upper.map { "\($0)" } ?? "inf")]; qsh runs Clip as ReLU (min 0) or ReLU6 (0 to 6)")
            }
        case "LeakyRelu":
            let x = try dynamic(inputs, 0, node)
            try emit(node, .pointwise(.leakyRelu(alpha: attributes.float("alpha") ?? 0.01)), inputs: [x.node], shape: x.shape)
        case "Sigmoid":
            let x = try dynamic(inputs, 0, node)
            try emit(node, .pointwise(.sigmoid), inputs: [x.node], shape: x.shape)
        case "HardSigmoid":
            let x = try dynamic(inputs, 0, node)
            try emit(node, .pointwise(.hardSigmoid(alpha: attributes.float("alpha") ?? 0.2, beta: attributes.float("beta") ?? 0.5)),
                     inputs: [x.node], shape: x.shape)
        case "HardSwish":
            let x = try dynamic(inputs, 0, node)
            try emit(node, .pointwise(.hardSwish), inputs: [x.node], shape: x.shape)
        case "Add":
            try importAdd(node, inputs: inputs)
        case "Sub", "Div":
            try importConstantArithmetic(node, inputs: inputs)
        case "Mul":
            guard case .dynamic? = inputs.first ?? nil, inputs.count == 2, case .dynamic? = inputs[1] else {
                try importConstantArithmetic(node, inputs: inputs)
                return
            }
            var a = try dynamic(inputs, 0, node), b = try dynamic(inputs, 1, node)
            if a.shape != b.shape, a.shape.count == 4, a.shape[2] == 1, a.shape[3] == 1 { swap(&a, &b) }
            guard a.shape == b.shape || (a.shape.count == 4 && b.shape == [a.shape[0], a.shape[1], 1, 1]) else {
                throw ONNXFolding.Problem("multiplies \(describe(a.shape)) by \(describe(b.shape)); qsh multiplies equal shapes or a (N, C, 1, 1) gate")
            }
            try emit(node, .multiply, inputs: [a.node, b.node], shape: a.shape)
        case "Concat":
            let parts = try inputs.indices.map { try dynamic(inputs, $0, node) }
            let rank = parts[0].shape.count
            guard let rawAxis = attributes.int("axis"), (rawAxis < 0 ? rawAxis + rank : rawAxis) == 1 else {
                throw ONNXFolding.Problem("joins along axis \(attributes.int("axis").map(String.init) ?? "?"); qsh joins computed tensors along channels (axis 1)")
            }
            for part in parts where part.shape.count != rank || Array(part.shape.dropFirst(2)) != Array(parts[0].shape.dropFirst(2)) {
                throw ONNXFolding.Problem("joins \(parts.map { describe($0.shape) }.joined(separator: " and ")), which differ beyond the channels")
            }
            var shape = parts[0].shape
            shape[1] = parts.reduce(0) { $0 + $1.shape[1] }
            try emit(node, .concat, inputs: parts.map(\.node), shape: shape)
        case "MaxPool", "AveragePool":
            try importPool(node, inputs: inputs, attributes: attributes)
        case "GlobalAveragePool":
            let x = try dynamic(inputs, 0, node)
            guard x.shape.count == 4 else { throw ONNXFolding.Problem("needs an NCHW input, got \(describe(x.shape))") }
            try emit(node, .globalAveragePool, inputs: [x.node], shape: [x.shape[0], x.shape[1], 1, 1])
        case "ReduceMean":
            let x = try dynamic(inputs, 0, node)
            let axes = try (opset >= 18 ? constantInput(inputs, 1, "ReduceMean axes")?.integers("ReduceMean axes") : attributes.ints("axes")) ?? []
            guard x.shape.count == 4, Set(axes.map { $0 < 0 ? $0 + 4 : $0 }) == [2, 3] else {
                throw ONNXFolding.Problem("averages axes \(axes) of \(describe(x.shape)); qsh averages over height and width (axes 2, 3)")
            }
            if attributes.int("keepdims") ?? 1 == 1 {
                try emit(node, .globalAveragePool, inputs: [x.node], shape: [x.shape[0], x.shape[1], 1, 1])
            } else {
                let pooled = append(Node(name: Self.moduleName(node) + ".pool", operation: .globalAveragePool, inputs: [x.node]))
                try emit(node, .flatten, inputs: [pooled], shape: [x.shape[0], x.shape[1]])
            }
        case "Flatten":
            let x = try dynamic(inputs, 0, node)
            let axis = attributes.int("axis") ?? 1
            guard axis == 1 || axis == 1 - x.shape.count else {
                throw ONNXFolding.Problem("flattens from axis \(axis); qsh flattens to (N, features), axis 1")
            }
            try flatten(node, x)
        case "Reshape":
            let x = try dynamic(inputs, 0, node)
            let target = try requiredConstant(inputs, 1, "the target shape")
            guard target.count == 2 else {
                throw ONNXFolding.Problem("reshapes \(describe(x.shape)) to rank \(target.count); qsh reshapes computed tensors only to (N, features)")
            }
            let features = x.shape.dropFirst().reduce(1, *)
            let first = target.values[0], second = target.values[1]
            // The batch stays first: as 0 (copy), the batch symbol, the batch size the graph was
            // traced with, or -1 with the features given.
            let batchFirst = first.isNaN || first == 0 || (first == -1 && second == Double(features))
                || (declaredBatch.map { first == Double($0) } ?? false)
            guard batchFirst, second == -1 || second == Double(features) else {
                throw ONNXFolding.Problem("reshapes \(describe(x.shape)) to \(target.values.map { $0.isNaN ? "N" : String(Int($0)) }); qsh reshapes computed tensors only to (N, features)")
            }
            try flatten(node, x)
        case "Squeeze":
            let x = try dynamic(inputs, 0, node)
            let axes = try (opset >= 13 ? constantInput(inputs, 1, "Squeeze axes")?.integers("Squeeze axes") : attributes.ints("axes")) ?? [2, 3]
            guard x.shape.count == 4, x.shape[2] == 1, x.shape[3] == 1, Set(axes.map { $0 < 0 ? $0 + 4 : $0 }) == [2, 3] else {
                throw ONNXFolding.Problem("squeezes axes \(axes) of \(describe(x.shape)); qsh squeezes (N, C, 1, 1) to (N, C) only")
            }
            try flatten(node, x)
        case "Pad":
            try importPad(node, inputs: inputs, attributes: attributes)
        default:
            throw ONNXFolding.Problem("\(node.opType) is not an operator qsh runs")
        }
    }

    private mutating func flatten(_ node: Onnx_NodeProto, _ x: Dynamic) throws {
        if x.shape.count == 2 {
            try define(node, .dynamic(x))
            absorbed += 1
            return
        }
        try emit(node, .flatten, inputs: [x.node], shape: [x.shape[0], x.shape.dropFirst().reduce(1, *)])
    }

    private mutating func importConv(_ node: Onnx_NodeProto, inputs: [Value?], attributes: ONNXAttributes) throws {
        let x = try dynamic(inputs, 0, node, allowPad: true)
        let weight = try requiredConstant(inputs, 1, "the weight")
        guard x.shape.count == 4, weight.shape.count == 4 else {
            throw ONNXFolding.Problem("is a \(max(weight.shape.count - 2, 0))-D convolution of \(describe(x.shape)); qsh runs 2-D convolutions")
        }
        let groups = attributes.int("group") ?? 1
        let strides = attributes.ints("strides") ?? [1, 1]
        let dilations = attributes.ints("dilations") ?? [1, 1]
        guard strides.count == 2, dilations.count == 2, strides.allSatisfy({ $0 >= 1 && $0 <= 64 }), dilations.allSatisfy({ $0 >= 1 && $0 <= 64 }),
              groups >= 1, weight.shape[0] % groups == 0, x.shape[1] == weight.shape[1] * groups else {
            throw ONNXFolding.Problem("has weight \(describe(weight.shape)), \(groups) group(s), strides \(strides), dilations \(dilations) for input \(describe(x.shape))")
        }
        if let kernel = attributes.ints("kernel_shape"), kernel != Array(weight.shape[2...]) {
            throw ONNXFolding.Problem("declares kernel \(kernel) but its weight is \(describe(weight.shape))")
        }
        var pads = attributes.ints("pads") ?? [0, 0, 0, 0]
        guard pads.count == 4, pads.allSatisfy({ $0 >= 0 && $0 <= 1024 }) else { throw ONNXFolding.Problem("has pads \(pads)") }
        let autoPad = attributes.string("auto_pad") ?? "NOTSET"
        // A pending Pad's shape is the padded one; the convolution reads the tensor before it.
        let size = [x.shape[2], x.shape[3]]
        let unpadded = [x.shape[2] - (x.pendingPad.map { $0[0] + $0[2] } ?? 0), x.shape[3] - (x.pendingPad.map { $0[1] + $0[3] } ?? 0)]
        switch autoPad {
        case "NOTSET", "":
            break
        case "VALID":
            pads = [0, 0, 0, 0]
        case "SAME_UPPER", "SAME_LOWER":
            for axis in 0 ..< 2 {
                let extent = (weight.shape[2 + axis] - 1) * dilations[axis] + 1
                let outSize = (size[axis] + strides[axis] - 1) / strides[axis]
                let total = max(0, (outSize - 1) * strides[axis] + extent - size[axis])
                let small = total / 2, large = total - small
                pads[axis] = autoPad == "SAME_UPPER" ? small : large
                pads[axis + 2] = autoPad == "SAME_UPPER" ? large : small
            }
        default:
            throw ONNXFolding.Problem("has auto_pad \(autoPad)")
        }
        if let pending = x.pendingPad {
            pads = zip(pads, pending).map { $0 + $1 }
            absorbed += 1
        }
        var bias: Tensor?
        if let value = try constantInput(inputs, 2, "the bias") {
            guard value.count == weight.shape[0] else { throw ONNXFolding.Problem("has \(value.count) biases for \(weight.shape[0]) output channels") }
            bias = Tensor(shape: [weight.shape[0]], data: value.floats())
        }
        let conv = Conv2D(weight: Tensor(shape: weight.shape, data: weight.floats()), bias: bias,
                          stride: (strides[0], strides[1]), padding: (pads[0], pads[1]), trailingPadding: (pads[2], pads[3]),
                          dilation: (dilations[0], dilations[1]), groups: groups)
        let geometry: ConvolutionGeometry
        do {
            geometry = try ConvolutionGeometry(input: [1, x.shape[1], unpadded[0], unpadded[1]], conv: conv)
        } catch let problem as ShapeProblem {
            throw ONNXFolding.Problem(problem.problem)
        }
        try emit(node, .conv(conv), inputs: [x.node], shape: [-1, geometry.outChannels, geometry.outHeight, geometry.outWidth],
                 weight: node.input[1])
    }

    private mutating func importDense(_ node: Onnx_NodeProto, inputs: [Value?], attributes: ONNXAttributes) throws {
        let x = try dynamic(inputs, 0, node)
        let b = try requiredConstant(inputs, 1, "the weight")
        guard x.shape.count == 2, b.shape.count == 2 else {
            throw ONNXFolding.Problem("multiplies \(describe(x.shape)) by \(describe(b.shape)); qsh runs dense layers on (N, features)",
                                      remedy: "flatten before the layer")
        }
        var weight: ONNXConstant
        var scale = 1.0, biasScale = 1.0
        if node.opType == "Gemm" {
            guard attributes.int("transA") ?? 0 == 0 else { throw ONNXFolding.Problem("transposes its input (transA=1)") }
            weight = attributes.int("transB") ?? 0 == 1 ? b : try ONNXFolding.transpose(b, permutation: [1, 0])
            scale = Double(attributes.float("alpha") ?? 1)
            biasScale = Double(attributes.float("beta") ?? 1)
        } else {
            weight = try ONNXFolding.transpose(b, permutation: [1, 0])
        }
        guard weight.shape[1] == x.shape[1] else {
            throw ONNXFolding.Problem("has weight for \(weight.shape[1]) features, input has \(x.shape[1])")
        }
        if scale != 1 { weight.values = weight.values.map { $0 * scale } }
        var bias: Tensor?
        if node.opType == "Gemm", let c = try constantInput(inputs, 2, "the bias") {
            let outputs = weight.shape[0]
            let values: [Double]
            if c.count == outputs, c.shape.last == outputs || c.shape.count <= 1 {
                values = c.values
            } else if c.count == 1 {
                values = [Double](repeating: c.values[0], count: outputs)
            } else {
                throw ONNXFolding.Problem("has bias \(describe(c.shape)) for \(outputs) outputs")
            }
            bias = Tensor(shape: [outputs], data: values.map { Float($0 * biasScale) })
        }
        let linear = Linear(weight: Tensor(shape: weight.shape, data: weight.floats()), bias: bias)
        try emit(node, .linear(linear), inputs: [x.node], shape: [-1, weight.shape[0]], weight: node.input[1])
    }

    private mutating func importAdd(_ node: Onnx_NodeProto, inputs: [Value?]) throws {
        guard inputs.count == 2 else { throw ONNXFolding.Problem("has \(inputs.count) inputs") }
        if case .dynamic? = inputs[0], case .dynamic? = inputs[1] {
            let a = try dynamic(inputs, 0, node), b = try dynamic(inputs, 1, node)
            guard a.shape == b.shape else {
                throw ONNXFolding.Problem("adds \(describe(a.shape)) and \(describe(b.shape)); qsh adds tensors of one shape")
            }
            try emit(node, .add, inputs: [a.node, b.node], shape: a.shape)
            return
        }
        // A constant added to a layer's output is that layer's bias (MatMul + Add, Conv + Add).
        let dynamicIndex = { if case .dynamic? = inputs[0] { return 0 } else { return 1 } }()
        let x = try dynamic(inputs, dynamicIndex, node)
        let addend = try requiredConstant(inputs, 1 - dynamicIndex, "the addend")
        let channels = x.shape.count >= 2 ? x.shape[1] : 0
        if readers[node.input[dynamicIndex], default: 0] == 1, x.node == nodes.count - 1,
           let bias = try? perChannel(addend, channels: channels, rank: x.shape.count) {
            func added(_ existing: Tensor?) -> Tensor {
                Tensor(shape: [channels], data: existing.map { zip($0.data, bias).map { $0 + $1 } } ?? bias)
            }
            switch nodes[x.node].operation {
            case .linear(var linear):
                linear.bias = added(linear.bias)
                nodes[x.node].operation = .linear(linear)
                try define(node, .dynamic(x))
                absorbed += 1
                return
            case .conv(var conv):
                conv.bias = added(conv.bias)
                nodes[x.node].operation = .conv(conv)
                try define(node, .dynamic(x))
                absorbed += 1
                return
            default:
                break
            }
        }
        try importConstantArithmetic(node, inputs: inputs)
    }

    /// `x + c`, `x - c`, `c - x`, `x * c`, `x / c` with a constant that is one value or one per
    /// channel: a per-channel affine map, which the model holds as a batch norm with identity
    /// statistics (mean 0, variance 1, epsilon 0), so `fold bn` folds it into a convolution before
    /// it like any other. Exporters write these for in-graph normalization and decomposed
    /// activations (x * relu6(x + 3) / 6).
    private mutating func importConstantArithmetic(_ node: Onnx_NodeProto, inputs: [Value?]) throws {
        guard inputs.count == 2 else { throw ONNXFolding.Problem("has \(inputs.count) inputs") }
        let dynamicIndex = { if case .dynamic? = inputs[0] { return 0 } else { return 1 } }()
        let x = try dynamic(inputs, dynamicIndex, node)
        let constant = try requiredConstant(inputs, 1 - dynamicIndex, "the constant operand")
        guard x.shape.count >= 2 else { throw ONNXFolding.Problem("needs an (N, C, ...) input, got \(describe(x.shape))") }
        let channels = x.shape[1]
        let values = try perChannel(constant, channels: channels, rank: x.shape.count)
        var scale = [Float](repeating: 1, count: channels), shift = [Float](repeating: 0, count: channels)
        switch (node.opType, dynamicIndex) {
        case ("Add", _): shift = values
        case ("Sub", 0): shift = values.map { -$0 }
        case ("Sub", _): scale = scale.map { -$0 }; shift = values
        case ("Mul", _): scale = values
        case ("Div", 0):
            guard values.allSatisfy({ $0 != 0 }) else { throw ONNXFolding.Problem("divides by zero") }
            scale = values.map { 1 / $0 }
        default:
            throw ONNXFolding.Problem("divides a constant by a computed tensor; qsh does not run that")
        }
        let affine = BatchNorm(gamma: Tensor(shape: [channels], data: scale), beta: Tensor(shape: [channels], data: shift),
                               runningMean: Tensor(shape: [channels], data: [Float](repeating: 0, count: channels)),
                               runningVar: Tensor(shape: [channels], data: [Float](repeating: 1, count: channels)), epsilon: 0)
        try emit(node, .batchNorm(affine), inputs: [x.node], shape: x.shape)
    }

    /// A constant that is one value or one per channel of a rank-`rank` tensor (shape (), (1),
    /// (C), (C, 1, 1) or (1, C, 1, 1) and the like), as `channels` values.
    private func perChannel(_ constant: ONNXConstant, channels: Int, rank: Int) throws -> [Float] {
        if constant.count == 1 { return [Float](repeating: Float(constant.values[0]), count: channels) }
        let aligned = [Int](repeating: 1, count: max(0, rank - constant.shape.count)) + constant.shape
        guard constant.count == channels, aligned.count == rank, aligned[1] == channels, aligned.filter({ $0 != 1 }) == [channels] else {
            throw ONNXFolding.Problem("operates with a constant of shape \(constant.shape) on a tensor with \(channels) channels; qsh takes one value or one per channel")
        }
        return constant.floats()
    }

    private mutating func importPool(_ node: Onnx_NodeProto, inputs: [Value?], attributes: ONNXAttributes) throws {
        let x = try dynamic(inputs, 0, node)
        guard x.shape.count == 4 else { throw ONNXFolding.Problem("needs an NCHW input, got \(describe(x.shape))") }
        guard let kernel = attributes.ints("kernel_shape"), kernel.count == 2, kernel[0] == kernel[1], kernel[0] >= 1 else {
            throw ONNXFolding.Problem("has kernel \(attributes.ints("kernel_shape") ?? []); qsh pools with square 2-D windows")
        }
        let strides = attributes.ints("strides") ?? [1, 1]
        guard strides.count == 2, strides[0] == strides[1], strides[0] >= 1 else {
            throw ONNXFolding.Problem("has strides \(strides); qsh pools with one stride for both axes")
        }
        if let dilations = attributes.ints("dilations"), dilations.contains(where: { $0 != 1 }) {
            throw ONNXFolding.Problem("has dilations \(dilations); qsh pools without dilation")
        }
        var pads = attributes.ints("pads") ?? [0, 0, 0, 0]
        switch attributes.string("auto_pad") ?? "NOTSET" {
        case "NOTSET", "": break
        case "VALID": pads = [0, 0, 0, 0]
        default: throw ONNXFolding.Problem("has auto_pad \(attributes.string("auto_pad") ?? ""); qsh pools with explicit pads")
        }
        guard pads.count == 4, Set(pads).count == 1, pads[0] >= 0, pads[0] * 2 <= kernel[0] else {
            throw ONNXFolding.Problem("has pads \(pads); qsh pools with the same padding on every side, at most half the window")
        }
        let pooling = Pooling(kernel: kernel[0], stride: strides[0], padding: pads[0])
        let isAverage = node.opType == "AveragePool"
        if isAverage, pads[0] > 0, attributes.int("count_include_pad") ?? 0 == 0 {
            throw ONNXFolding.Problem("averages padded windows without counting the padding; qsh divides by the whole window (count_include_pad=1)",
                                      remedy: "export with count_include_pad=True (PyTorch's default)")
        }
        let floorSize = (0 ..< 2).map { (x.shape[2 + $0] + 2 * pads[0] - kernel[0]) / strides[0] + 1 }
        if attributes.int("ceil_mode") == 1 {
            let ceilSize = (0 ..< 2).map { axis -> Int in
                var size = (x.shape[2 + axis] + 2 * pads[0] - kernel[0] + strides[0] - 1) / strides[0] + 1
                // A last window that would start in the padding is dropped, as PyTorch does.
                if (size - 1) * strides[0] >= x.shape[2 + axis] + pads[0] { size -= 1 }
                return size
            }
            guard ceilSize == floorSize else {
                throw ONNXFolding.Problem("rounds its output size up (ceil_mode=1), which changes the size here; qsh rounds down",
                                          remedy: "export with ceil_mode=False")
            }
        }
        guard floorSize.allSatisfy({ $0 >= 1 }) else {
            throw ONNXFolding.Problem("a \(kernel[0])x\(kernel[0]) window does not fit \(describe(x.shape))")
        }
        try emit(node, isAverage ? .averagePool(pooling) : .maxPool(pooling), inputs: [x.node],
                 shape: [x.shape[0], x.shape[1], floorSize[0], floorSize[1]])
    }

    private mutating func importPad(_ node: Onnx_NodeProto, inputs: [Value?], attributes: ONNXAttributes) throws {
        let x = try dynamic(inputs, 0, node)
        guard (attributes.string("mode") ?? "constant") == "constant" else {
            throw ONNXFolding.Problem("pads in mode '\(attributes.string("mode") ?? "")'; qsh pads with zeros only")
        }
        if let fill = try constantInput(inputs, 2, "the padding value"), try fill.scalar("the padding value") != 0 {
            throw ONNXFolding.Problem("pads with \(fill.values[0]); qsh pads with zeros only")
        }
        let rank = x.shape.count
        let given = try requiredConstant(inputs, 1, "the pads").integers("the pads")
        let axes = try constantInput(inputs, 3, "the axes")?.integers("the axes").map { $0 < 0 ? $0 + rank : $0 } ?? Array(0 ..< rank)
        guard given.count == 2 * axes.count else { throw ONNXFolding.Problem("has \(given.count) pads for \(axes.count) axes") }
        var begin = [Int](repeating: 0, count: rank), end = [Int](repeating: 0, count: rank)
        for (k, axis) in axes.enumerated() {
            guard axis >= 0, axis < rank else { throw ONNXFolding.Problem("pads axis \(axis) of a rank-\(rank) tensor") }
            begin[axis] = given[k]
            end[axis] = given[k + axes.count]
        }
        guard rank == 4, begin[0] == 0, begin[1] == 0, end[0] == 0, end[1] == 0,
              (begin + end).allSatisfy({ $0 >= 0 && $0 <= 1024 }) else {
            throw ONNXFolding.Problem("pads \(given); qsh pads height and width only, by zero or more")
        }
        let pad = [begin[2], begin[3], end[2], end[3]]
        var padded = x
        padded.pendingPad = x.pendingPad.map { zip($0, pad).map { $0 + $1 } } ?? pad
        padded.shape[2] += pad[0] + pad[2]
        padded.shape[3] += pad[1] + pad[3]
        try define(node, .dynamic(padded))
    }

    // MARK: - Finishing

    /// The nodes the output depends on, renumbered in their order.
    private func pruned(to output: Int) -> [Node] {
        var needed = [Bool](repeating: false, count: nodes.count)
        needed[output] = true
        for index in stride(from: output, through: 0, by: -1) where needed[index] {
            for input in nodes[index].inputs { needed[input] = true }
        }
        needed[0] = true
        var renumbered = [Int](repeating: -1, count: nodes.count)
        var kept: [Node] = []
        for index in 0 ... output where needed[index] {
            renumbered[index] = kept.count
            var node = nodes[index]
            node.inputs = node.inputs.map { renumbered[$0] }
            kept.append(node)
        }
        return kept
    }

    /// One image through the model, so that a shape the importer got wrong is an error here,
    /// naming the node, and not at the first evaluation.
    private func check(_ model: Model) throws {
        let input = Tensor(shape: [1] + model.inputShape, data: [Float](repeating: 0, count: model.inputShape.reduce(1, *)))
        do {
            _ = try ForwardPass.run(model, input: input)
        } catch let error as EngineError {
            throw ONNXImportError(file: file, node: "'\(error.node)'", problem: error.problem)
        }
    }

    private func constant(_ tensor: Onnx_TensorProto, node: String?) throws -> ONNXConstant {
        do {
            return try ONNXTensorReader.read(tensor, folder: folder)
        } catch let problem as ONNXFolding.Problem {
            throw ONNXImportError(file: file, node: node, problem: problem.problem, remedy: problem.remedy)
        }
    }

    private func failure(_ problem: String, remedy: String? = nil) -> ONNXImportError {
        ONNXImportError(file: file, problem: problem, remedy: remedy)
    }

    private func describe(_ shape: [Int]) -> String {
        "(" + shape.map { $0 < 0 ? "N" : String($0) }.joined(separator: ", ") + ")"
    }
}
