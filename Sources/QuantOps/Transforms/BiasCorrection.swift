import Foundation

/// The distribution of one tensor's channels before a ReLU: N(mean_c, std_c^2), as batch norm
/// makes it (mean = beta, std = |gamma|).
public struct ChannelPrior: Sendable, Equatable {
    public var mean: [Double]
    public var std: [Double]

    public init(mean: [Double], std: [Double]) {
        self.mean = mean
        self.std = std
    }
}

/// Priors by the name of the conv or linear node whose output they describe (after folding, the
/// folded layer; before, the layer that feeds the batch norm).
public typealias ChannelPriors = [String: ChannelPrior]

/// Data-free bias correction (Nagel et al. 2019; methods.md §4): weight quantization shifts a
/// layer's expected output by `E[(W_q - W) x]`; subtracting that from the bias removes the shift.
/// `E[x]` per input channel comes from the batch-norm statistics of the layers before, pushed
/// through ReLU as a clipped normal and summed over residual adds.
public enum BiasCorrection {
    public struct CorrectedLayer: Sendable, Equatable {
        public var layer: Int
        public var name: String
        /// max_o |E[(W_q - W) x]_o|: the largest shift removed.
        public var largestShift: Double
    }

    /// Priors from every batch norm that directly follows a conv or linear node.
    public static func priors(fromBatchNormsOf model: Model) -> ChannelPriors {
        var priors: ChannelPriors = [:]
        for node in model.nodes {
            guard case .batchNorm(let norm) = node.operation, let producer = node.inputs.first,
                  producer >= 0, producer < model.nodes.count, model.nodes[producer].operation.isWeightLayer else { continue }
            priors[model.nodes[producer].name] = ChannelPrior(mean: norm.beta.data.map(Double.init),
                                                              std: norm.gamma.data.map { Double(abs($0)) })
        }
        return priors
    }

    /// After equalization divided output channel j of a layer by s_j, its distribution scales too.
    public static func rescale(_ priors: inout ChannelPriors, for pairs: [Equalization.Pair]) {
        for pair in pairs {
            guard var prior = priors[pair.firstName], prior.mean.count == pair.scales.count else { continue }
            for j in pair.scales.indices {
                prior.mean[j] /= Double(pair.scales[j])
                prior.std[j] /= Double(pair.scales[j])
            }
            priors[pair.firstName] = prior
        }
    }

    /// Corrects the bias of every weight layer whose weights differ from `reference` (by node
    /// name) and whose input mean the priors determine. Returns the corrected layers.
    @discardableResult
    public static func correct(_ model: inout Model, reference: Model, priors: ChannelPriors) throws -> [CorrectedLayer] {
        let moments = propagate(model, priors: priors)
        var working = model
        var corrected: [CorrectedLayer] = []
        for (offset, index) in working.weightLayerNodes.enumerated() {
            let node = working.nodes[index]
            guard let source = node.inputs.first, source >= 0, source < moments.count, let input = moments[source],
                  let floatIndex = reference.nodeIndex(named: node.name) else { continue }
            switch (node.operation, reference.nodes[floatIndex].operation) {
            case (.conv(var conv), .conv(let original)):
                guard conv.precision.isQuantized, original.weight.shape == conv.weight.shape,
                      input.mean.count == conv.inChannels else { continue }
                let shift = expectedShift(quantized: conv.weight, float: original.weight, groups: conv.groups, inputMean: input.mean)
                conv.bias = subtract(shift, from: conv.bias, channels: conv.outChannels)
                working.nodes[index].operation = .conv(conv)
                corrected.append(CorrectedLayer(layer: offset + 1, name: node.name, largestShift: shift.map(abs).max() ?? 0))
            case (.linear(var linear), .linear(let original)):
                guard linear.precision.isQuantized, original.weight.shape == linear.weight.shape,
                      linear.weight.rank == 2 else { continue }
                let features = linear.weight.shape[1]
                guard features % max(1, input.mean.count) == 0 else { continue }
                // A flattened (C, H, W) input repeats each channel's mean over its positions.
                let repeats = features / max(1, input.mean.count)
                let mean = input.mean.flatMap { [Double](repeating: $0, count: repeats) }
                let shift = expectedShift(quantized: linear.weight, float: original.weight, groups: 1, inputMean: mean)
                linear.bias = subtract(shift, from: linear.bias, channels: linear.weight.shape[0])
                working.nodes[index].operation = .linear(linear)
                corrected.append(CorrectedLayer(layer: offset + 1, name: node.name, largestShift: shift.map(abs).max() ?? 0))
            default:
                continue
            }
        }
        model = working
        return corrected
    }

    /// `sum_{c,k} (W_q - W)[o, c, k] * E[x_c]` per output channel o; padding borders are ignored.
    static func expectedShift(quantized: Tensor, float: Tensor, groups: Int, inputMean: [Double]) -> [Double] {
        let outChannels = quantized.shape[0]
        let perOutput = quantized.count / max(1, outChannels)
        let inPerGroup = quantized.rank >= 2 ? quantized.shape[1] : perOutput
        let kernel = perOutput / max(1, inPerGroup)
        let outPerGroup = outChannels / max(1, groups)
        var shift = [Double](repeating: 0, count: outChannels)
        for o in 0..<outChannels {
            let group = o / max(1, outPerGroup)
            var total = 0.0
            for c in 0..<inPerGroup {
                let channel = group * inPerGroup + c
                guard channel < inputMean.count else { continue }
                var difference = 0.0
                let start = o * perOutput + c * kernel
                for k in start..<(start + kernel) { difference += Double(quantized.data[k]) - Double(float.data[k]) }
                total += difference * inputMean[channel]
            }
            shift[o] = total
        }
        return shift
    }

    static func subtract(_ shift: [Double], from bias: Tensor?, channels: Int) -> Tensor {
        var values = bias?.data ?? [Float](repeating: 0, count: channels)
        for o in 0..<min(channels, values.count) { values[o] = Float(Double(values[o]) - shift[o]) }
        return Tensor(shape: [channels], data: values)
    }

    /// Per-channel mean and variance of each node's output where the priors determine them.
    static func propagate(_ model: Model, priors: ChannelPriors) -> [ChannelPrior?] {
        var moments = [ChannelPrior?](repeating: nil, count: model.nodes.count)
        for (index, node) in model.nodes.enumerated() {
            let inputs = node.inputs.map { $0 >= 0 && $0 < index ? moments[$0] : nil }
            switch node.operation {
            case .input:
                // Normalized images: roughly zero mean and unit variance per channel.
                let channels = max(1, model.normalization.mean.count)
                moments[index] = ChannelPrior(mean: [Double](repeating: 0, count: channels), std: [Double](repeating: 1, count: channels))
            case .conv, .linear:
                moments[index] = priors[node.name]
            case .batchNorm(let norm):
                moments[index] = ChannelPrior(mean: norm.beta.data.map(Double.init), std: norm.gamma.data.map { Double(abs($0)) })
            case .relu, .relu6:
                moments[index] = inputs.first.flatMap { $0.map(rectified) }
            case .add:
                guard inputs.count == 2, let a = inputs[0], let b = inputs[1], a.mean.count == b.mean.count else { continue }
                moments[index] = ChannelPrior(mean: zip(a.mean, b.mean).map(+),
                                              std: zip(a.std, b.std).map { ($0 * $0 + $1 * $1).squareRoot() })
            case .shortcutA(_, let padChannels):
                guard let a = inputs.first ?? nil else { continue }
                let zeros = [Double](repeating: 0, count: padChannels)
                moments[index] = ChannelPrior(mean: zeros + a.mean + zeros, std: zeros + a.std + zeros)
            case .averagePool, .globalAveragePool, .flatten, .fakeQuantize:
                moments[index] = inputs.first ?? nil
            case .concat:
                let parts = inputs.compactMap { $0 }
                guard parts.count == inputs.count else { continue }
                moments[index] = ChannelPrior(mean: parts.flatMap(\.mean), std: parts.flatMap(\.std))
            case .multiply, .pointwise:
                // No closed form for the moments of a product or a sigmoid of priors.
                continue
            case .maxPool:
                continue
            }
        }
        return moments
    }

    /// Mean and standard deviation of ReLU(z) for z ~ N(mu, sigma^2) (a clipped normal).
    static func rectified(_ prior: ChannelPrior) -> ChannelPrior {
        var mean = prior.mean, std = prior.std
        for c in prior.mean.indices {
            let mu = prior.mean[c], sigma = prior.std[c]
            guard sigma > 0 else {
                mean[c] = max(mu, 0)
                std[c] = 0
                continue
            }
            let alpha = mu / sigma
            let density = exp(-alpha * alpha / 2) / (2 * Double.pi).squareRoot()
            let cumulative = 0.5 * erfc(-alpha / 2.0.squareRoot())
            let first = mu * cumulative + sigma * density
            let second = (mu * mu + sigma * sigma) * cumulative + mu * sigma * density
            mean[c] = first
            std[c] = max(0, second - first * first).squareRoot()
        }
        return ChannelPrior(mean: mean, std: std)
    }
}
