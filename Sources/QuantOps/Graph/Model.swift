/// A network as a list of named nodes in topological order.
///
/// Node names are the PyTorch module names of the checkpoint (without a `module.` prefix), so
/// that a saved model keeps the key names a PyTorch user expects.

public struct Conv2D: Sendable, Equatable {
    /// (out channels, in channels / groups, kernel height, kernel width)
    public var weight: Tensor
    public var bias: Tensor?
    public var stride: (Int, Int)
    /// Zero rows above and columns left of the input.
    public var padding: (Int, Int)
    /// Zero rows below and columns right of the input: equal to `padding` except where a graph
    /// pads asymmetrically (TensorFlow-style "same" padding at stride 2, ONNX `pads`).
    public var trailingPadding: (Int, Int)
    public var dilation: (Int, Int)
    public var groups: Int
    public var precision: WeightPrecision

    public init(weight: Tensor, bias: Tensor? = nil, stride: (Int, Int) = (1, 1), padding: (Int, Int) = (0, 0),
                trailingPadding: (Int, Int)? = nil, dilation: (Int, Int) = (1, 1), groups: Int = 1,
                precision: WeightPrecision = .float32) {
        self.weight = weight
        self.bias = bias
        self.stride = stride
        self.padding = padding
        self.trailingPadding = trailingPadding ?? padding
        self.dilation = dilation
        self.groups = groups
        self.precision = precision
    }

    public var outChannels: Int { weight.shape[0] }
    public var inChannels: Int { weight.shape[1] * groups }

    public static func == (a: Conv2D, b: Conv2D) -> Bool {
        a.weight == b.weight && a.bias == b.bias && a.stride == b.stride && a.padding == b.padding
            && a.trailingPadding == b.trailingPadding && a.dilation == b.dilation && a.groups == b.groups && a.precision == b.precision
    }
}

public struct Linear: Sendable, Equatable {
    /// (out features, in features)
    public var weight: Tensor
    public var bias: Tensor?
    public var precision: WeightPrecision

    public init(weight: Tensor, bias: Tensor? = nil, precision: WeightPrecision = .float32) {
        self.weight = weight
        self.bias = bias
        self.precision = precision
    }
}

public struct BatchNorm: Sendable, Equatable {
    public var gamma: Tensor
    public var beta: Tensor
    public var runningMean: Tensor
    public var runningVar: Tensor
    public var epsilon: Float
    /// Carried through only so that a saved checkpoint has the keys PyTorch wrote.
    public var batchesTracked: Int64?

    public init(gamma: Tensor, beta: Tensor, runningMean: Tensor, runningVar: Tensor,
                epsilon: Float = 1e-5, batchesTracked: Int64? = nil) {
        self.gamma = gamma
        self.beta = beta
        self.runningMean = runningMean
        self.runningVar = runningVar
        self.epsilon = epsilon
        self.batchesTracked = batchesTracked
    }

    public var channels: Int { gamma.count }
}

public struct Pooling: Sendable, Equatable {
    public var kernel: Int
    public var stride: Int
    public var padding: Int

    public init(kernel: Int, stride: Int, padding: Int = 0) {
        self.kernel = kernel
        self.stride = stride
        self.padding = padding
    }
}

public enum Operation: Sendable, Equatable {
    /// The image batch, already normalized.
    case input
    case conv(Conv2D)
    case linear(Linear)
    case batchNorm(BatchNorm)
    case relu
    case relu6
    /// Sum of the node's two inputs.
    case add
    /// ResNet "option A" shortcut: `x[:, :, ::stride, ::stride]`, zero-padded with
    /// `padChannels` channels on each side of the channel axis.
    case shortcutA(stride: Int, padChannels: Int)
    case averagePool(Pooling)
    case maxPool(Pooling)
    case globalAveragePool
    case flatten
    /// The node's inputs joined along the channel axis, in input order (DenseNet, Inception).
    case concat
    /// Product of the node's two inputs; the second may be (N, C, 1, 1), broadcast over the
    /// plane (the gate of a squeeze-excite block), or the same shape as the first (swish).
    case multiply
    /// A pointwise nonlinearity other than the clamps (ReLU, ReLU6) that fuse into convolutions.
    case pointwise(Pointwise)
    /// Rounds an activation tensor onto an integer grid, as a deployment runtime stores it
    /// between fused layers; inserted by activation quantization.
    case fakeQuantize(ActivationQuantizer)

    /// Conv and linear nodes are the "layers" that selectors count.
    public var isWeightLayer: Bool {
        switch self {
        case .conv, .linear: return true
        default: return false
        }
    }
}

public struct Node: Sendable, Equatable {
    public var name: String
    public var operation: Operation
    /// Indices of earlier nodes whose outputs this node consumes.
    public var inputs: [Int]

    public init(name: String, operation: Operation, inputs: [Int]) {
        self.name = name
        self.operation = operation
        self.inputs = inputs
    }
}

/// Per-channel input normalization applied to images scaled to [0, 1].
public struct Normalization: Sendable, Equatable {
    public var mean: [Float]
    public var std: [Float]

    public init(mean: [Float], std: [Float]) {
        self.mean = mean
        self.std = std
    }
}

public struct Model: Sendable, Equatable {
    public var name: String
    public var nodes: [Node]
    public var normalization: Normalization
    /// (channels, height, width) of the images the model was built for: 3x32x32 for the CIFAR
    /// networks, what an imported graph declares (or was given) otherwise.
    public var inputShape: [Int]

    public init(name: String, nodes: [Node], normalization: Normalization, inputShape: [Int] = [3, 32, 32]) {
        self.name = name
        self.nodes = nodes
        self.normalization = normalization
        self.inputShape = inputShape
    }

    /// Indices of conv and linear nodes in execution order; layer `k` (from 1) is `weightLayers[k-1]`.
    public var weightLayerNodes: [Int] {
        nodes.indices.filter { nodes[$0].operation.isWeightLayer }
    }

    public func nodeIndex(named name: String) -> Int? {
        nodes.firstIndex { $0.name == name }
    }

    /// Nodes that read the output of `index`.
    public func consumers(of index: Int) -> [Int] {
        nodes.indices.filter { nodes[$0].inputs.contains(index) }
    }
}
