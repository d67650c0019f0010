/// Stochastic gradient descent with Nesterov momentum, as `torch.optim.SGD(nesterov=True,
/// dampening=0)` computes it, so that settings carry over from PyTorch recipes:
///   d = g + decay * w;  v = mu * v + d;  w -= lr * (d + mu * v).
public struct NesterovSGD: Sendable, Equatable {
    public var learningRate: Float
    public var momentum: Float
    public var weightDecay: Float

    public init(learningRate: Float, momentum: Float, weightDecay: Float = 0) {
        self.learningRate = learningRate
        self.momentum = momentum
        self.weightDecay = weightDecay
    }

    /// Updates `weights` and their `velocity` (same length) in place.
    public func step(_ weights: inout [Float], velocity: inout [Float], gradient: [Float]) {
        let lr = learningRate, mu = momentum, decay = weightDecay
        for index in weights.indices {
            let direction = gradient[index] + decay * weights[index]
            let v = mu * velocity[index] + direction
            velocity[index] = v
            weights[index] -= lr * (direction + mu * v)
        }
    }

    /// The step with the gradient scaled by kappa, written as `w' = start - kappa * direction`:
    /// w' = w - lr (1 + mu) decay w - lr mu^2 v - kappa lr (1 + mu) g.
    public func affineStep(weights: [Float], velocity: [Float], gradient: [Float]) -> (start: [Float], direction: [Float]) {
        let lr = learningRate, mu = momentum, decay = weightDecay
        var start = weights, direction = gradient
        for index in weights.indices {
            start[index] = weights[index] - lr * (1 + mu) * decay * weights[index] - lr * mu * mu * velocity[index]
            direction[index] = lr * (1 + mu) * gradient[index]
        }
        return (start, direction)
    }
}
