import Foundation

/// The pretrained CIFAR-10 networks qsh knows by name, and how to build their graphs.
public enum ModelZoo {
    public enum Architecture: Sendable, Equatable {
        /// akamaster ResNet-(6n+2): post-add ReLU, parameter-free option-A shortcuts.
        case akamasterResNet(depth: Int)
        /// Neuron-Merging ResNet-56: ReLU at block start, no ReLU after the add, option-B shortcuts.
        case neuronMergingResNet56
    }

    public struct Entry: Sendable, Equatable {
        public var name: String
        public var fileName: String
        /// Hex SHA-256 of the file; nil where no reference copy was available to hash.
        public var sha256: String?
        public var downloadURL: URL?
        public var architecture: Architecture
        public var normalization: Normalization
        /// Top-1 % of the float model on the CIFAR-10 test set, as PyTorch measures it.
        public var referenceTop1: Double?

        /// The checkpoint as the fetcher looks for it, downloads and verifies it.
        public var remoteFile: RemoteFile { RemoteFile(fileName: fileName, url: downloadURL, sha256: sha256) }
    }

    static let imageNetNormalization = Normalization(mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225])
    static let cifarNormalization = Normalization(mean: [0.4914, 0.4822, 0.4465], std: [0.2023, 0.1994, 0.2010])

    /// File names, digests and URLs come from `KnownFiles`, the one table of published files.
    private static func akamaster(_ depth: Int, _ file: RemoteFile, _ top1: Double?) -> Entry {
        Entry(name: "resnet\(depth)", fileName: file.fileName, sha256: file.sha256, downloadURL: file.url,
              architecture: .akamasterResNet(depth: depth), normalization: imageNetNormalization, referenceTop1: top1)
    }

    public static let entries: [Entry] = [
        akamaster(20, KnownFiles.resnet20, 91.73),
        akamaster(32, KnownFiles.resnet32, 92.63),
        akamaster(44, KnownFiles.resnet44, 93.10),
        akamaster(56, KnownFiles.resnet56, 93.39),
        akamaster(110, KnownFiles.resnet110, nil),
        Entry(name: "nm-resnet56", fileName: KnownFiles.neuronMergingResNet56.fileName,
              sha256: KnownFiles.neuronMergingResNet56.sha256, downloadURL: KnownFiles.neuronMergingResNet56.url,
              architecture: .neuronMergingResNet56, normalization: cifarNormalization, referenceTop1: 93.88),
    ]

    public static func entry(named name: String) throws -> Entry {
        guard let entry = entries.first(where: { $0.name == name.lowercased() }) else {
            throw ModelZooError.unknownModel(name: name, known: entries.map(\.name))
        }
        return entry
    }

    /// Builds the graph of `entry` from a checkpoint's tensors. Every expected tensor must be
    /// present with its expected shape, and every tensor must be used (`num_batches_tracked`
    /// is optional), so a checkpoint of another architecture is refused rather than misread.
    public static func build(_ entry: Entry, from stateDict: StateDict) throws -> Model {
        var builder = GraphBuilder(stateDict: stateDict, normalization: entry.normalization, modelName: entry.name)
        switch entry.architecture {
        case .akamasterResNet(let depth):
            try builder.buildAkamaster(depth: depth)
        case .neuronMergingResNet56:
            try builder.buildNeuronMerging(blocksPerStage: 9)
        }
        return try builder.finish()
    }
}

public enum ModelZooError: Error, CustomStringConvertible, Equatable {
    case unknownModel(name: String, known: [String])
    case unsupportedDepth(Int)
    case missingTensor(key: String, expectedShape: [Int])
    case shapeMismatch(key: String, expected: [Int], actual: [Int])
    case unexpectedTensors([String])

    public var description: String {
        switch self {
        case .unknownModel(let name, let known):
            return "unknown model '\(name)'; known models: \(known.joined(separator: ", "))"
        case .unsupportedDepth(let depth):
            return "ResNet-\(depth) is not a CIFAR ResNet: depth must be 6n+2 (20, 32, 44, 56, 110)"
        case .missingTensor(let key, let shape):
            return "\(key): expected \(describeShape(shape)), the checkpoint has no such tensor; is it a checkpoint of this architecture?"
        case .shapeMismatch(let key, let expected, let actual):
            return "\(key): expected \(describeShape(expected)), checkpoint has \(describeShape(actual))"
        case .unexpectedTensors(let keys):
            let shown = keys.prefix(5).joined(separator: ", ") + (keys.count > 5 ? ", ... (\(keys.count) in all)" : "")
            return "the checkpoint has tensors this architecture does not use: \(shown); is it a checkpoint of another model?"
        }
    }
}

/// Appends nodes named after PyTorch modules, taking each parameter from the state dict.
private struct GraphBuilder {
    let stateDict: StateDict
    let normalization: Normalization
    let modelName: String
    var nodes: [Node] = []
    var usedKeys: Set<String> = []

    init(stateDict: StateDict, normalization: Normalization, modelName: String) {
        self.stateDict = stateDict
        self.normalization = normalization
        self.modelName = modelName
    }

    mutating func tensor(_ key: String, _ shape: [Int]) throws -> Tensor {
        guard let entry = stateDict[key] else { throw ModelZooError.missingTensor(key: key, expectedShape: shape) }
        guard entry.tensor.shape == shape else {
            throw ModelZooError.shapeMismatch(key: key, expected: shape, actual: entry.tensor.shape)
        }
        usedKeys.insert(key)
        return entry.tensor
    }

    @discardableResult
    mutating func append(_ name: String, _ operation: Operation, _ inputs: [Int]) -> Int {
        nodes.append(Node(name: name, operation: operation, inputs: inputs))
        return nodes.count - 1
    }

    mutating func conv(_ name: String, _ input: Int, in inChannels: Int, out outChannels: Int,
                       kernel: Int, stride: Int) throws -> Int {
        let weight = try tensor(name + ".weight", [outChannels, inChannels, kernel, kernel])
        // Saved after 'fold bn', a convolution carries its batch norm in a bias.
        let bias = stateDict[name + ".bias"] == nil ? nil : try tensor(name + ".bias", [outChannels])
        let padding = kernel / 2
        return append(name, .conv(Conv2D(weight: weight, bias: bias, stride: (stride, stride), padding: (padding, padding))), [input])
    }

    mutating func batchNorm(_ name: String, _ input: Int, channels: Int) throws -> Int {
        // A checkpoint saved after 'fold bn' has no batch norm after a convolution with a bias.
        if stateDict[name + ".weight"] == nil, stateDict[name + ".running_mean"] == nil,
           case .conv(let conv) = nodes[input].operation, conv.bias != nil {
            return input
        }
        let norm = BatchNorm(gamma: try tensor(name + ".weight", [channels]),
                             beta: try tensor(name + ".bias", [channels]),
                             runningMean: try tensor(name + ".running_mean", [channels]),
                             runningVar: try tensor(name + ".running_var", [channels]),
                             batchesTracked: batchesTracked(name))
        return append(name, .batchNorm(norm), [input])
    }

    mutating func batchesTracked(_ name: String) -> Int64? {
        let key = name + ".num_batches_tracked"
        guard let entry = stateDict[key], entry.tensor.count == 1 else { return nil }
        usedKeys.insert(key)
        return Int64(entry.tensor.data[0])
    }

    @discardableResult
    mutating func classifier(_ name: String, _ input: Int, features: Int) throws -> Int {
        let pooled = append("avgpool", .globalAveragePool, [input])
        let flat = append("flatten", .flatten, [pooled])
        guard let weightEntry = stateDict[name + ".weight"], weightEntry.tensor.rank == 2 else {
            throw ModelZooError.missingTensor(key: name + ".weight", expectedShape: [10, features])
        }
        let classes = weightEntry.tensor.shape[0]
        let weight = try tensor(name + ".weight", [classes, features])
        let bias = try tensor(name + ".bias", [classes])
        return append(name, .linear(Linear(weight: weight, bias: bias)), [flat])
    }

    /// conv1 -> bn1 -> ReLU -> 3 stages of n BasicBlocks -> global average pool -> linear.
    mutating func buildAkamaster(depth: Int) throws {
        guard depth >= 8, (depth - 2) % 6 == 0 else { throw ModelZooError.unsupportedDepth(depth) }
        let blocks = (depth - 2) / 6
        let input = append("input", .input, [])
        var x = try conv("conv1", input, in: 3, out: 16, kernel: 3, stride: 1)
        x = try batchNorm("bn1", x, channels: 16)
        x = append("relu", .relu, [x])
        var channels = 16
        for (stage, width) in [16, 32, 64].enumerated() {
            for block in 0..<blocks {
                let prefix = "layer\(stage + 1).\(block)"
                let stride = stage > 0 && block == 0 ? 2 : 1
                var out = try conv(prefix + ".conv1", x, in: channels, out: width, kernel: 3, stride: stride)
                out = try batchNorm(prefix + ".bn1", out, channels: width)
                out = append(prefix + ".relu1", .relu, [out])
                out = try conv(prefix + ".conv2", out, in: width, out: width, kernel: 3, stride: 1)
                out = try batchNorm(prefix + ".bn2", out, channels: width)
                var shortcut = x
                if stride != 1 || channels != width {
                    shortcut = append(prefix + ".shortcut", .shortcutA(stride: stride, padChannels: width / 4), [x])
                }
                out = append(prefix + ".add", .add, [out, shortcut])
                x = append(prefix + ".relu2", .relu, [out])
                channels = width
            }
        }
        try classifier("linear", x, features: 64)
    }

    /// conv1 -> bn1 -> 3 stages of blocks (ReLU first, option-B shortcut where the shape
    /// changes) -> ReLU -> global average pool -> fc. Within a block the shortcut convolution
    /// runs after conv2, as the module's forward calls them, so layer numbers follow that order.
    mutating func buildNeuronMerging(blocksPerStage blocks: Int) throws {
        let input = append("input", .input, [])
        var x = try conv("conv1", input, in: 3, out: 16, kernel: 3, stride: 1)
        x = try batchNorm("bn1", x, channels: 16)
        var channels = 16
        for (stage, width) in [16, 32, 64].enumerated() {
            for block in 0..<blocks {
                let prefix = "layer\(stage + 1).\(block)"
                let stride = stage > 0 && block == 0 ? 2 : 1
                let activated = append(prefix + ".relu0", .relu, [x])
                var out = try conv(prefix + ".conv1", activated, in: channels, out: width, kernel: 3, stride: stride)
                out = try batchNorm(prefix + ".bn1", out, channels: width)
                out = append(prefix + ".relu1", .relu, [out])
                out = try conv(prefix + ".conv2", out, in: width, out: width, kernel: 3, stride: 1)
                out = try batchNorm(prefix + ".bn2", out, channels: width)
                var shortcut = activated
                if stride != 1 || channels != width {
                    shortcut = try conv(prefix + ".downsample.0", activated, in: channels, out: width, kernel: 1, stride: stride)
                    shortcut = try batchNorm(prefix + ".downsample.1", shortcut, channels: width)
                }
                x = append(prefix + ".add", .add, [out, shortcut])
                channels = width
            }
        }
        x = append("relu", .relu, [x])
        try classifier("fc", x, features: 64)
    }

    func finish() throws -> Model {
        let leftOver = stateDict.keys.filter { !usedKeys.contains($0) && !$0.hasSuffix(".num_batches_tracked") }
        guard leftOver.isEmpty else { throw ModelZooError.unexpectedTensors(leftOver) }
        return Model(name: modelName, nodes: nodes, normalization: normalization)
    }
}
