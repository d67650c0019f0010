/// Cross-layer weight equalization (Nagel et al. 2019, "DFQ"; methods.md §4).
///
/// For two convolutions with only a ReLU between them, ReLU(x / s) = ReLU(x) / s for s > 0, so
/// scaling output channel j of the first layer (weights and bias) by 1/s_j and input channel j
/// of the second by s_j leaves the function unchanged. With s_j = sqrt(r1_j / r2_j) both
/// layers' channel-j ranges become sqrt(r1_j * r2_j), which suits per-tensor weight grids.
public enum Equalization {
    public struct Pair: Sendable, Equatable {
        /// Weight layer numbers (from 1).
        public var first: Int
        public var second: Int
        public var firstName: String
        public var secondName: String
        /// s_j per channel between them.
        public var scales: [Float]
    }

    /// The conv -> ReLU -> conv pairs of a model: the first conv feeds only the ReLU, the ReLU
    /// only the second conv, both ungrouped, channel counts matching.
    public static func pairs(in model: Model) -> [(first: Int, relu: Int, second: Int)] {
        var result: [(Int, Int, Int)] = []
        for (index, node) in model.nodes.enumerated() {
            guard case .conv(let first) = node.operation, first.groups == 1,
                  let relu = model.soleConsumer(of: index), model.nodes[relu].operation == .relu,
                  let second = model.soleConsumer(of: relu), case .conv(let next) = model.nodes[second].operation,
                  next.groups == 1, next.inChannels == first.outChannels, model.nodes[second].inputs == [relu]
            else { continue }
            result.append((index, relu, second))
        }
        return result
    }

    /// Equalizes every pair in place. Refuses quantized layers (equalizing moves weights off
    /// their grid) and batch norms between the convolutions (the BN would undo the scaling).
    @discardableResult
    public static func apply(_ model: inout Model) throws -> [Pair] {
        try checkEqualizable(model)
        var working = model
        var layerNumber: [Int: Int] = [:]
        for (offset, index) in working.weightLayerNodes.enumerated() { layerNumber[index] = offset + 1 }
        var done: [Pair] = []
        for (firstIndex, _, secondIndex) in pairs(in: working) {
            guard case .conv(var first) = working.nodes[firstIndex].operation,
                  case .conv(var second) = working.nodes[secondIndex].operation else { continue }
            let channels = first.outChannels
            let firstPer = first.weight.count / channels
            let secondOut = second.outChannels
            let kernel = second.weight.count / (secondOut * channels)
            var scales = [Float](repeating: 1, count: channels)
            for j in 0..<channels {
                var r1: Float = 0
                for k in (j * firstPer)..<((j + 1) * firstPer) { r1 = max(r1, abs(first.weight.data[k])) }
                var r2: Float = 0
                for o in 0..<secondOut {
                    let start = (o * channels + j) * kernel
                    for k in start..<(start + kernel) { r2 = max(r2, abs(second.weight.data[k])) }
                }
                // A dead channel on either side has nothing to balance.
                guard r1 > 0, r2 > 0 else { continue }
                scales[j] = (r1 / r2).squareRoot()
            }
            for j in 0..<channels where scales[j] != 1 {
                let s = scales[j]
                for k in (j * firstPer)..<((j + 1) * firstPer) { first.weight.data[k] /= s }
                if first.bias != nil { first.bias?.data[j] /= s }
                for o in 0..<secondOut {
                    let start = (o * channels + j) * kernel
                    for k in start..<(start + kernel) { second.weight.data[k] *= s }
                }
            }
            working.nodes[firstIndex].operation = .conv(first)
            working.nodes[secondIndex].operation = .conv(second)
            done.append(Pair(first: layerNumber[firstIndex] ?? 0, second: layerNumber[secondIndex] ?? 0,
                             firstName: working.nodes[firstIndex].name, secondName: working.nodes[secondIndex].name,
                             scales: scales))
        }
        model = working
        return done
    }

    static func checkEqualizable(_ model: Model) throws {
        for node in model.nodes {
            if let layer = node.operation.weightLayer, layer.precision.isQuantized {
                throw QuantizationError(place: node.name, problem: "is already quantized (\(layer.precision.label)); equalizing would move its weights off the grid",
                                        unmet: .floatWeights)
            }
            switch node.operation {
            case .fakeQuantize:
                throw QuantizationError(place: node.name, problem: "activation ranges were set for the unequalized weights",
                                        unmet: .floatActivations)
            case .batchNorm:
                throw QuantizationError(place: node.name, problem: "a batch norm between convolutions would undo the equalizing scales",
                                        unmet: .foldedBatchNorms)
            default:
                continue
            }
        }
    }
}
