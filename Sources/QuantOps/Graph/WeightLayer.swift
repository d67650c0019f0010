/// The parameters that conv and linear layers share: their weight, bias and the grid the weight
/// lies on. Code that reads or rewrites weights goes through this view, so that it handles both
/// kinds of layer in one path; what only a convolution has (stride, padding, groups) stays on
/// `Conv2D`.
public struct WeightLayer: Sendable, Equatable {
    public enum Kind: String, Sendable {
        case conv, linear
    }

    public let kind: Kind
    /// (out, in/groups, kh, kw) for convolutions, (out, in) for linear layers.
    public var weight: Tensor
    public var bias: Tensor?
    public var precision: WeightPrecision

    public var outputChannels: Int { weight.shape.first ?? 0 }
    public var parameterCount: Int { weight.count + (bias?.count ?? 0) }
}

extension Operation {
    /// The weights of a conv or linear operation; nil for every other operation. Setting writes
    /// weight, bias and precision back into the operation, keeping a convolution's geometry.
    /// Views come only from this getter, so a view always goes back to an operation of its kind;
    /// setting nil leaves the operation as it is.
    public var weightLayer: WeightLayer? {
        get {
            switch self {
            case .conv(let conv): WeightLayer(kind: .conv, weight: conv.weight, bias: conv.bias, precision: conv.precision)
            case .linear(let linear): WeightLayer(kind: .linear, weight: linear.weight, bias: linear.bias, precision: linear.precision)
            default: nil
            }
        }
        set {
            guard let newValue else { return }
            switch self {
            case .conv(var conv):
                (conv.weight, conv.bias, conv.precision) = (newValue.weight, newValue.bias, newValue.precision)
                self = .conv(conv)
            case .linear(var linear):
                (linear.weight, linear.bias, linear.precision) = (newValue.weight, newValue.bias, newValue.precision)
                self = .linear(linear)
            default:
                break
            }
        }
    }
}

extension Model {
    /// Whether any conv or linear layer holds quantized weights.
    public var hasQuantizedWeights: Bool {
        nodes.contains { $0.operation.weightLayer?.precision.isQuantized == true }
    }
}
