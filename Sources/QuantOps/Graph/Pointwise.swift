import Foundation

/// The pointwise nonlinearities of imported graphs, each with its forward value and its
/// derivative in one place, so that the executors and the gradient tape cannot disagree.
///
/// ReLU and ReLU6 are not here: they are clamps, which convolutions take as fused post-ops and
/// the tape differentiates together with the batch norm before them.
public enum Pointwise: Sendable, Equatable, CustomStringConvertible {
    /// 1 / (1 + e^-x)
    case sigmoid
    /// max(0, min(1, alpha x + beta)); ONNX defaults alpha 0.2, beta 0.5 (PyTorch uses 1/6, 1/2).
    case hardSigmoid(alpha: Float, beta: Float)
    /// x * max(0, min(1, x / 6 + 1/2))
    case hardSwish
    /// x for x >= 0, alpha x below.
    case leakyRelu(alpha: Float)

    public func value(_ x: Float) -> Float {
        switch self {
        case .sigmoid:
            return 1 / (1 + expf(-x))
        case .hardSigmoid(let alpha, let beta):
            return min(max(alpha * x + beta, 0), 1)
        case .hardSwish:
            return x * min(max(x / 6 + 0.5, 0), 1)
        case .leakyRelu(let alpha):
            return x >= 0 ? x : alpha * x
        }
    }

    /// d value / dx at x (one-sided where the function has a kink, as PyTorch's autograd takes it).
    public func derivative(_ x: Float) -> Float {
        switch self {
        case .sigmoid:
            let s = 1 / (1 + expf(-x))
            return s * (1 - s)
        case .hardSigmoid(let alpha, let beta):
            let y = alpha * x + beta
            return y > 0 && y < 1 ? alpha : 0
        case .hardSwish:
            if x < -3 { return 0 }
            if x > 3 { return 1 }
            return x / 3 + 0.5
        case .leakyRelu(let alpha):
            return x > 0 ? 1 : alpha
        }
    }

    /// The ONNX operator that computes it.
    public var onnxOperator: String {
        switch self {
        case .sigmoid: return "Sigmoid"
        case .hardSigmoid: return "HardSigmoid"
        case .hardSwish: return "HardSwish"
        case .leakyRelu: return "LeakyRelu"
        }
    }

    public var description: String {
        switch self {
        case .sigmoid: return "sigmoid"
        case .hardSigmoid(let alpha, let beta): return "hard-sigmoid(\(alpha), \(beta))"
        case .hardSwish: return "hard-swish"
        case .leakyRelu(let alpha): return "leaky-relu(\(alpha))"
        }
    }
}
