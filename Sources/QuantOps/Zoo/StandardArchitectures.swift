import Foundation

/// Common PyTorch CNN definitions, recognised from a checkpoint's key names and shapes alone.
///
/// Depths (blocks per stage, convolutions, inverted-residual blocks) identify the architecture;
/// every width is read from the tensors, so reduced-width and retrained variants load too. Node
/// names are the PyTorch module names, so `Model.stateDict()` writes the checkpoint's keys back.
public enum StandardArchitecture: String, CaseIterable, Sendable {
    /// torchvision ResNet-18: 7x7 stem, max-pool, BasicBlocks [2, 2, 2, 2], `downsample`, `fc`.
    case resnet18
    /// torchvision ResNet-34: BasicBlocks [3, 4, 6, 3].
    case resnet34
    /// torchvision ResNet-50 (v1.5, stride on the 3x3): Bottlenecks [3, 4, 6, 3].
    case resnet50
    /// The CIFAR ResNet-18 of kuangliu/pytorch-cifar: 3x3 stem, no max-pool, `shortcut`, `linear`
    /// (`downsample` and `fc` are accepted too).
    case cifarResNet18 = "cifar-resnet18"
    /// torchvision VGG16-BN: `features.N`, AdaptiveAvgPool2d(7), classifier.0 / .3 / .6.
    case vgg16bn
    /// The CIFAR VGG16-BN of kuangliu/pytorch-cifar (`features.N`, one `classifier` linear layer),
    /// or with a three-layer `classifier.0 / .3 / .6` head on the 512 features.
    case cifarVGG16bn = "cifar-vgg16bn"
    /// torchvision MobileNetV2: `features.0` stem, 17 inverted residual blocks, `features.18`, `classifier.1`.
    case mobilenetV2 = "mobilenetv2"

    public var isCIFAR: Bool { self == .cifarResNet18 || self == .cifarVGG16bn }

    /// (channels, height, width) of the images the architecture is defined for.
    public var inputShape: [Int] { isCIFAR ? [3, 32, 32] : [3, 224, 224] }

    public var normalization: Normalization { isCIFAR ? ModelZoo.cifarNormalization : ModelZoo.imageNetNormalization }

    /// The architecture whose key names and layer counts the checkpoint has; nil when none fits.
    /// A checkpoint that fits is then built by `build`, which checks every shape and every key.
    public static func recognise(_ stateDict: StateDict) -> StandardArchitecture? {
        allCases.first { misfit(of: $0, in: stateDict) == nil }
    }

    /// `recognise`, or an error that names every architecture tried and what did not fit it.
    public static func identify(_ stateDict: StateDict) throws -> StandardArchitecture {
        if let architecture = recognise(stateDict) { return architecture }
        throw StandardArchitectureError.unrecognised(allCases.map {
            .init(architecture: $0.rawValue, misfit: misfit(of: $0, in: stateDict) ?? "")
        })
    }

    /// Recognises the checkpoint's architecture and builds it.
    public static func build(from stateDict: StateDict, name: String) throws -> Model {
        try build(try identify(stateDict), from: stateDict, name: name)
    }

    /// Builds the graph of `architecture` from a checkpoint's tensors. Every expected tensor must
    /// be present with its expected shape, and every tensor must be used (`num_batches_tracked`
    /// is optional). A checkpoint saved after `fold bn` (convolutions with biases, no batch
    /// norms) loads too.
    public static func build(_ architecture: StandardArchitecture, from stateDict: StateDict, name: String) throws -> Model {
        var builder = ArchitectureGraphBuilder(stateDict: stateDict)
        switch architecture {
        case .resnet18: try builder.buildResNet(blocks: [2, 2, 2, 2], bottleneck: false, cifar: false)
        case .resnet34: try builder.buildResNet(blocks: [3, 4, 6, 3], bottleneck: false, cifar: false)
        case .resnet50: try builder.buildResNet(blocks: [3, 4, 6, 3], bottleneck: true, cifar: false)
        case .cifarResNet18: try builder.buildResNet(blocks: [2, 2, 2, 2], bottleneck: false, cifar: true)
        case .vgg16bn, .cifarVGG16bn: try builder.buildVGG(imageSize: architecture.inputShape[1], imageNetHead: !architecture.isCIFAR)
        case .mobilenetV2: try builder.buildMobileNetV2()
        }
        return try builder.finish(name: name, architecture: architecture)
    }

    // MARK: Recognition

    /// Why the checkpoint is not one of `architecture`: the first key or count that does not fit.
    static func misfit(of architecture: StandardArchitecture, in stateDict: StateDict) -> String? {
        let keys = Signature(stateDict)
        switch architecture {
        case .resnet18, .resnet34, .resnet50, .cifarResNet18:
            let stem = architecture == .cifarResNet18 ? 3 : 7
            if let problem = keys.expect("conv1.weight", [nil, 3, stem, stem]) { return problem }
            let bottleneck = architecture == .resnet50
            if keys.has("layer1.0.conv3.weight") != bottleneck {
                return bottleneck ? "layer1.0.conv3.weight: not in the checkpoint; a Bottleneck block has a third convolution"
                    : "layer1.0.conv3.weight: a Bottleneck's third convolution; this architecture has BasicBlocks"
            }
            let expected = architecture == .resnet18 || architecture == .cifarResNet18 ? [2, 2, 2, 2] : [3, 4, 6, 3]
            for stage in 1...4 {
                let count = keys.count { "layer\(stage).\($0).conv1.weight" }
                if count != expected[stage - 1] {
                    return "layer\(stage).\(min(count, expected[stage - 1])).conv1.weight: layer\(stage) has \(count) blocks, \(architecture.rawValue) has \(expected[stage - 1])"
                }
            }
            let classifier = architecture == .cifarResNet18 && keys.has("linear.weight") ? "linear" : "fc"
            return keys.expect(classifier + ".weight", [nil, nil])
        case .vgg16bn, .cifarVGG16bn:
            if let problem = keys.expect("features.0.weight", [nil, 3, 3, 3]) { return problem }
            let convolutions = ArchitectureGraphBuilder.vggConvolutionIndices(stateDict)
            guard convolutions.count == 13 else {
                return "features.N.weight: the checkpoint has \(convolutions.count) convolutions in 'features', VGG16 has 13"
            }
            let last = "features.\(convolutions[12]).weight"
            guard let channels = stateDict[last]?.tensor.shape.first else { return "\(last): not in the checkpoint" }
            let head = architecture == .vgg16bn || !keys.has("classifier.weight") ? "classifier.0.weight" : "classifier.weight"
            return keys.expect(head, [nil, architecture == .vgg16bn ? channels * 49 : channels])
        case .mobilenetV2:
            if let problem = keys.expect("features.0.0.weight", [nil, 3, 3, 3]) { return problem }
            let blocks = keys.count(from: 1) { "features.\($0).conv.0.0.weight" }
            if let problem = keys.expect("features.\(blocks + 1).0.weight", [nil, nil, 1, 1]) { return problem }
            if let problem = keys.expect("classifier.1.weight", [nil, nil]) { return problem }
            do {
                _ = try ArchitectureGraphBuilder.mobileNetStages(stateDict, blocks: blocks)
                return nil
            } catch {
                return String(describing: error)
            }
        }
    }

    /// Key presence and rank-and-shape checks, phrased as the reason a checkpoint does not fit.
    private struct Signature {
        let stateDict: StateDict
        init(_ stateDict: StateDict) { self.stateDict = stateDict }

        func has(_ key: String) -> Bool { stateDict[key] != nil }

        /// How many of `key(start)`, `key(start + 1)`, ... are present, counting up to the first gap.
        func count(from start: Int = 0, _ key: (Int) -> String) -> Int {
            var index = start
            while has(key(index)) { index += 1 }
            return index - start
        }

        func expect(_ key: String, _ shape: [Int?]) -> String? {
            guard let tensor = stateDict[key]?.tensor else {
                return "\(key): not in the checkpoint (expected \(describeShapePattern(shape)))"
            }
            return shapeMatches(tensor.shape, shape) ? nil
                : "\(key): expected \(describeShapePattern(shape)), the checkpoint has \(describeShape(tensor.shape))"
        }
    }
}

/// A shape with free dimensions (nil, shown as '?') where the architecture allows any width.
func shapeMatches(_ shape: [Int], _ pattern: [Int?]) -> Bool {
    shape.count == pattern.count && zip(shape, pattern).allSatisfy { $1 == nil || $0 == $1 }
}

func describeShapePattern(_ pattern: [Int?]) -> String {
    pattern.map { $0.map(String.init) ?? "?" }.joined(separator: "x")
}

public enum StandardArchitectureError: Error, CustomStringConvertible, Equatable {
    public struct Attempt: Sendable, Equatable {
        public var architecture: String
        public var misfit: String
    }

    case missingTensor(key: String, expected: String)
    case shapeMismatch(key: String, expected: String, actual: [Int])
    /// The layer layout does not fit (a pooling position, a block count).
    case structure(String)
    case unexpectedTensors(architecture: String, keys: [String])
    case unrecognised([Attempt])

    public var description: String {
        switch self {
        case .missingTensor(let key, let expected):
            return "\(key): expected \(expected), the checkpoint has no such tensor"
        case .shapeMismatch(let key, let expected, let actual):
            return "\(key): expected \(expected), the checkpoint has \(describeShape(actual))"
        case .structure(let problem):
            return problem
        case .unexpectedTensors(let architecture, let keys):
            let shown = keys.prefix(5).joined(separator: ", ") + (keys.count > 5 ? ", ... (\(keys.count) in all)" : "")
            return "the checkpoint has tensors \(architecture) does not use: \(shown); is it a checkpoint of another model?"
        case .unrecognised(let attempts):
            return "the checkpoint is none of the standard architectures; tried "
                + attempts.map { "\($0.architecture) (\($0.misfit))" }.joined(separator: "; ")
        }
    }
}
