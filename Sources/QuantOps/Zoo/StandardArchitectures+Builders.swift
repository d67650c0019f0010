import Foundation

/// Appends nodes named after the PyTorch modules of a standard architecture, taking each
/// parameter from the state dict and reading every width from the tensors' shapes.
struct ArchitectureGraphBuilder {
    let stateDict: StateDict
    var nodes: [Node] = []
    var usedKeys: Set<String> = []

    init(stateDict: StateDict) {
        self.stateDict = stateDict
    }

    // MARK: Parameters and nodes

    mutating func tensor(_ key: String, _ pattern: [Int?]) throws -> Tensor {
        guard let entry = stateDict[key] else {
            throw StandardArchitectureError.missingTensor(key: key, expected: describeShapePattern(pattern))
        }
        guard shapeMatches(entry.tensor.shape, pattern) else {
            throw StandardArchitectureError.shapeMismatch(key: key, expected: describeShapePattern(pattern), actual: entry.tensor.shape)
        }
        usedKeys.insert(key)
        return entry.tensor
    }

    @discardableResult
    mutating func append(_ name: String, _ operation: Operation, _ inputs: [Int]) -> Int {
        nodes.append(Node(name: name, operation: operation, inputs: inputs))
        return nodes.count - 1
    }

    /// A square convolution padded by kernel / 2 on each side; `out` nil takes the width from the weight.
    mutating func conv(_ name: String, _ input: Int, in inChannels: Int, out: Int? = nil, kernel: Int,
                       stride: Int = 1, groups: Int = 1) throws -> (node: Int, channels: Int) {
        let weight = try tensor(name + ".weight", [out, inChannels / groups, kernel, kernel])
        let channels = weight.shape[0]
        // Saved after 'fold bn', a convolution carries its batch norm in a bias.
        let bias = stateDict[name + ".bias"] == nil ? nil : try tensor(name + ".bias", [channels])
        let padding = kernel / 2
        let node = append(name, .conv(Conv2D(weight: weight, bias: bias, stride: (stride, stride),
                                            padding: (padding, padding), groups: groups)), [input])
        return (node, channels)
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

    /// Convolution, batch norm and (unless `activation` is nil) a clamp, as one chain of nodes.
    mutating func convBN(_ conv: String, _ norm: String, _ activation: (name: String, operation: Operation)?,
                         _ input: Int, in inChannels: Int, out: Int? = nil, kernel: Int, stride: Int = 1,
                         groups: Int = 1) throws -> (node: Int, channels: Int) {
        let made = try self.conv(conv, input, in: inChannels, out: out, kernel: kernel, stride: stride, groups: groups)
        var node = try batchNorm(norm, made.node, channels: made.channels)
        if let activation { node = append(activation.name, activation.operation, [node]) }
        return (node, made.channels)
    }

    mutating func linear(_ name: String, _ input: Int, in features: Int) throws -> (node: Int, features: Int) {
        let weight = try tensor(name + ".weight", [nil, features])
        let bias = stateDict[name + ".bias"] == nil ? nil : try tensor(name + ".bias", [weight.shape[0]])
        return (append(name, .linear(Linear(weight: weight, bias: bias)), [input]), weight.shape[0])
    }

    func finish(name: String, architecture: StandardArchitecture) throws -> Model {
        let leftOver = stateDict.keys.filter { !usedKeys.contains($0) && !$0.hasSuffix(".num_batches_tracked") }
        guard leftOver.isEmpty else {
            throw StandardArchitectureError.unexpectedTensors(architecture: architecture.rawValue, keys: leftOver)
        }
        return Model(name: name, nodes: nodes, normalization: architecture.normalization, inputShape: architecture.inputShape)
    }

    // MARK: ResNet

    /// torchvision ResNet (7x7 stride-2 stem, max-pool) or the CIFAR ResNet (3x3 stem, no
    /// max-pool); four stages, the first block of stages 2-4 with stride 2; a 1x1 projection
    /// shortcut where the shape changes; ReLU after the add; global average pool; classifier.
    mutating func buildResNet(blocks: [Int], bottleneck: Bool, cifar: Bool) throws {
        let input = append("input", .input, [])
        var (x, channels) = try convBN("conv1", "bn1", ("relu", .relu), input, in: 3, kernel: cifar ? 3 : 7, stride: cifar ? 1 : 2)
        if !cifar { x = append("maxpool", .maxPool(Pooling(kernel: 3, stride: 2, padding: 1)), [x]) }
        for (stage, count) in blocks.enumerated() {
            for block in 0..<count {
                let prefix = "layer\(stage + 1).\(block)"
                let stride = stage > 0 && block == 0 ? 2 : 1
                var out: (node: Int, channels: Int)
                if bottleneck {
                    out = try convBN(prefix + ".conv1", prefix + ".bn1", (prefix + ".relu1", .relu), x, in: channels, kernel: 1)
                    out = try convBN(prefix + ".conv2", prefix + ".bn2", (prefix + ".relu2", .relu), out.node,
                                     in: out.channels, out: out.channels, kernel: 3, stride: stride)
                    out = try convBN(prefix + ".conv3", prefix + ".bn3", nil, out.node, in: out.channels, kernel: 1)
                } else {
                    out = try convBN(prefix + ".conv1", prefix + ".bn1", (prefix + ".relu1", .relu), x,
                                     in: channels, kernel: 3, stride: stride)
                    out = try convBN(prefix + ".conv2", prefix + ".bn2", nil, out.node, in: out.channels, out: out.channels, kernel: 3)
                }
                var shortcut = x
                if stride != 1 || channels != out.channels {
                    // torchvision names the projection 'downsample', kuangliu's CIFAR ResNet 'shortcut'.
                    let name = cifar && stateDict[prefix + ".downsample.0.weight"] == nil ? prefix + ".shortcut" : prefix + ".downsample"
                    shortcut = try convBN(name + ".0", name + ".1", nil, x, in: channels, out: out.channels, kernel: 1, stride: stride).node
                }
                let sum = append(prefix + ".add", .add, [out.node, shortcut])
                x = append(prefix + (bottleneck ? ".relu3" : ".relu2"), .relu, [sum])
                channels = out.channels
            }
        }
        let pooled = append("avgpool", .globalAveragePool, [x])
        let flat = append("flatten", .flatten, [pooled])
        _ = try linear(cifar && stateDict["fc.weight"] == nil ? "linear" : "fc", flat, in: channels)
    }

    // MARK: VGG

    /// Indices N of the convolutions `features.N` (the rank-4 weights), in order.
    static func vggConvolutionIndices(_ stateDict: StateDict) -> [Int] {
        stateDict.keys.compactMap { key -> Int? in
            let parts = key.split(separator: ".")
            guard parts.count == 3, parts[0] == "features", parts[2] == "weight",
                  let index = Int(parts[1]), stateDict[key]?.tensor.rank == 4 else { return nil }
            return index
        }.sorted()
    }

    /// `features`: conv (i), BN (i + 1), ReLU (i + 2), and a 2x2 max-pool at i + 3 where the next
    /// convolution is at i + 4. Whether a max-pool follows the last convolution is what makes the
    /// map the classifier's input size. Then the ImageNet head (AdaptiveAvgPool2d(7), the identity
    /// on the 7x7 map of a 224x224 image; classifier.0 / .3 / .6 with ReLU and dropout between)
    /// or the CIFAR head (one `classifier` linear layer, or the three-layer one).
    mutating func buildVGG(imageSize: Int, imageNetHead: Bool) throws {
        let indices = Self.vggConvolutionIndices(stateDict)
        guard let lastIndex = indices.last else {
            throw StandardArchitectureError.missingTensor(key: "features.0.weight", expected: "?x3x3x3")
        }
        var x = append("input", .input, [])
        var channels = 3
        var pools = 0
        for (position, index) in indices.enumerated() {
            (x, channels) = try convBN("features.\(index)", "features.\(index + 1)", ("features.\(index + 2)", .relu),
                                       x, in: channels, kernel: 3)
            guard position + 1 < indices.count else { break }
            switch indices[position + 1] - index {
            case 3: break
            case 4:
                x = append("features.\(index + 3)", .maxPool(Pooling(kernel: 2, stride: 2)), [x])
                pools += 1
            default:
                throw StandardArchitectureError.structure(
                    "features.\(index) to features.\(indices[position + 1]): a VGG-BN stage has its convolutions 3 apart (conv, BN, ReLU), 4 with a max-pool between")
            }
        }
        // The first classifier layer reads channels x side x side features.
        let head = imageNetHead || stateDict["classifier.weight"] == nil ? "classifier.0" : "classifier"
        guard let features = stateDict[head + ".weight"]?.tensor.shape.last else {
            throw StandardArchitectureError.missingTensor(key: head + ".weight", expected: "?x\(channels * (imageNetHead ? 49 : 1))")
        }
        let side = Int(Double(features / channels).squareRoot().rounded())
        let trailingPools = side > 0 && side * side * channels == features && imageSize % side == 0
            ? Int(log2(Double(imageSize / side)).rounded()) - pools : -1
        guard (0...1).contains(trailingPools), imageSize / side == 1 << (pools + trailingPools),
              !imageNetHead || side == 7 else {
            throw StandardArchitectureError.shapeMismatch(
                key: head + ".weight", expected: "?x\(channels * (imageNetHead ? 49 : 1)) (\(channels) channels on the final map)",
                actual: stateDict[head + ".weight"]?.tensor.shape ?? [])
        }
        if trailingPools == 1 { x = append("features.\(lastIndex + 3)", .maxPool(Pooling(kernel: 2, stride: 2)), [x]) }
        x = append("flatten", .flatten, [x])
        if head == "classifier" {
            _ = try linear("classifier", x, in: features)
            return
        }
        var width = features
        for (layer, relu) in [(0, 1), (3, 4)] {
            (x, width) = try linear("classifier.\(layer)", x, in: width)
            x = append("classifier.\(relu)", .relu, [x])
        }
        _ = try linear("classifier.6", x, in: width)
    }

    // MARK: MobileNetV2

    /// torchvision's inverted_residual_setting: blocks per stage and the first block's stride.
    static let mobileNetStageBlocks = [1, 2, 3, 4, 3, 3, 1]
    static let mobileNetStageStrides = [1, 2, 2, 2, 1, 2, 1]

    /// Whether block `index` has a 1x1 expansion (`conv.0` expand, `conv.1` depthwise) or not.
    static func mobileNetExpands(_ stateDict: StateDict, block index: Int) -> Bool {
        stateDict["features.\(index).conv.1.0.weight"] != nil
    }

    /// The stride of each block, features.1 ... features.`blocks`. Each stage's width differs from
    /// the one before in torchvision's setting, so a change of width starts a stage; where narrow
    /// widths coincide, the standard block counts say where stages start.
    static func mobileNetStages(_ stateDict: StateDict, blocks: Int) throws -> [Int] {
        guard let stem = stateDict["features.0.0.weight"]?.tensor.shape.first else {
            throw StandardArchitectureError.missingTensor(key: "features.0.0.weight", expected: "?x3x3x3")
        }
        var counts: [Int] = []
        var channels = stem
        for index in 1...max(blocks, 1) {
            let project = "features.\(index).conv.\(mobileNetExpands(stateDict, block: index) ? 2 : 1).weight"
            guard let out = stateDict[project]?.tensor.shape.first else {
                throw StandardArchitectureError.missingTensor(key: project, expected: "?x?x1x1")
            }
            if out != channels || counts.isEmpty { counts.append(0) }
            counts[counts.count - 1] += 1
            channels = out
        }
        if counts.count != mobileNetStageBlocks.count {
            guard blocks == mobileNetStageBlocks.reduce(0, +) else {
                throw StandardArchitectureError.structure(
                    "features.1 to features.\(blocks): \(blocks) inverted residual blocks in \(counts.count) widths; MobileNetV2 has 17 in 7 stages")
            }
            counts = mobileNetStageBlocks
        }
        return zip(counts, mobileNetStageStrides).flatMap { count, stride in [stride] + Array(repeating: 1, count: count - 1) }
    }

    /// Stem (3x3 stride 2, BN, ReLU6), inverted residual blocks (1x1 expand, 3x3 depthwise, 1x1
    /// project; a residual add at stride 1 with equal widths), 1x1 head conv, global average pool,
    /// classifier.1 (classifier.0 is dropout).
    mutating func buildMobileNetV2() throws {
        var blocks = 0
        while stateDict["features.\(blocks + 1).conv.0.0.weight"] != nil { blocks += 1 }
        let strides = try Self.mobileNetStages(stateDict, blocks: blocks)
        let input = append("input", .input, [])
        var (x, channels) = try convBN("features.0.0", "features.0.1", ("features.0.2", .relu6), input, in: 3, kernel: 3, stride: 2)
        for (offset, stride) in strides.enumerated() {
            let prefix = "features.\(offset + 1).conv"
            var hidden = (node: x, channels: channels)
            var depthwise = 0
            if Self.mobileNetExpands(stateDict, block: offset + 1) {
                hidden = try convBN(prefix + ".0.0", prefix + ".0.1", (prefix + ".0.2", .relu6), x, in: channels, kernel: 1)
                depthwise = 1
            }
            let dw = "\(prefix).\(depthwise)"
            hidden = try convBN(dw + ".0", dw + ".1", (dw + ".2", .relu6), hidden.node, in: hidden.channels,
                                out: hidden.channels, kernel: 3, stride: stride, groups: hidden.channels)
            let out = try convBN("\(prefix).\(depthwise + 1)", "\(prefix).\(depthwise + 2)", nil, hidden.node,
                                 in: hidden.channels, kernel: 1)
            x = stride == 1 && channels == out.channels ? append("features.\(offset + 1).add", .add, [out.node, x]) : out.node
            channels = out.channels
        }
        let head = "features.\(blocks + 1)"
        (x, channels) = try convBN(head + ".0", head + ".1", (head + ".2", .relu6), x, in: channels, kernel: 1)
        let pooled = append("avgpool", .globalAveragePool, [x])
        let flat = append("flatten", .flatten, [pooled])
        _ = try linear("classifier.1", flat, in: channels)
    }
}
