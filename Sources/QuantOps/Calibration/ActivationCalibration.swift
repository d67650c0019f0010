import Foundation

/// Statistics of every activation point of a model over a set of calibration images.
public struct CalibrationStatistics: Sendable, Codable {
    /// By the name of the node whose output the point is.
    public var tensors: [String: TensorStatistics]
    public var images: Int
    /// Wall-clock time of the pass that collected them.
    public var seconds: Double
}

/// What identifies a set of statistics: the float-activation model (weights included) and the
/// images it ran on. Activation quantizers are not part of the key, so re-placing or
/// re-calibrating them reuses the statistics.
public struct CalibrationKey: Hashable, Sendable {
    public var model: UInt64
    public var data: String

    public init(model: Model, data: String) {
        self.model = ActivationCalibration.fingerprint(ActivationQuantization.removingQuantizers(model))
        self.data = data
    }
}

/// Statistics already collected in a session. A handful of entries is enough for a recipe that
/// compares methods and precisions; the oldest goes first.
public struct CalibrationCache: Sendable {
    public static let capacity = 8
    private var entries: [(key: CalibrationKey, statistics: CalibrationStatistics)] = []

    public init() {}

    public func statistics(for key: CalibrationKey) -> CalibrationStatistics? {
        entries.first { $0.key == key }?.statistics
    }

    public mutating func store(_ statistics: CalibrationStatistics, for key: CalibrationKey) {
        entries.removeAll { $0.key == key }
        entries.append((key, statistics))
        if entries.count > Self.capacity { entries.removeFirst(entries.count - Self.capacity) }
    }

    public var count: Int { entries.count }
}

/// One calibrated quantizer, for reports.
public struct CalibratedTensor: Sendable, Equatable {
    public var name: String
    public var range: ClosedRange<Float>
    public var observed: ClosedRange<Float>
}

public enum ActivationCalibration {
    /// Runs the model with float activations over `batchCount` batches and gathers the
    /// statistics of every activation point in one pass. `batch(k)` supplies batch k;
    /// nil when `shouldStop` asked to stop.
    public static func collect(_ model: Model, batchCount: Int, batch: (Int) throws -> Tensor,
                               shouldStop: (() -> Bool)? = nil) throws -> CalibrationStatistics? {
        let start = Date()
        let base = ActivationQuantization.removingQuantizers(model)
        let points = ActivationQuantization.points(in: base)
        var slots = [Int?](repeating: nil, count: base.nodes.count)
        for (slot, point) in points.enumerated() { slots[point.nodeIndex] = slot }
        var statistics = [TensorStatistics](repeating: TensorStatistics(), count: points.count)
        var images = 0
        // The points are outputs the fused plan materializes anyway, so observing them costs
        // only the copies out of the executor's layouts.
        let executor = try CompiledModel(base, observing: Set(points.map(\.nodeIndex)))
        for index in 0..<batchCount {
            if shouldStop?() == true { return nil }
            let input = try batch(index)
            images += input.shape.first ?? 0
            _ = try executor.run(input) { node, output in
                if let slot = slots[node] { statistics[slot].observe(output) }
            }
        }
        var byName: [String: TensorStatistics] = [:]
        for (point, values) in zip(points, statistics) { byName[point.name] = values }
        return CalibrationStatistics(tensors: byName, images: images, seconds: Date().timeIntervalSince(start))
    }

    /// Sets the range of every activation quantizer of `model` with `estimator`.
    @discardableResult
    public static func apply(_ estimator: RangeEstimator, statistics: CalibrationStatistics, to model: inout Model) throws
        -> [CalibratedTensor]
    {
        var ranges: [String: ClosedRange<Float>] = [:]
        var report: [CalibratedTensor] = []
        let quantizers = ActivationQuantization.quantizers(in: model)
        guard !quantizers.isEmpty else {
            throw QuantizationError(problem: "the model has no activation quantizers to calibrate", unmet: .activationQuantizers)
        }
        for point in ActivationQuantization.points(in: model) {
            guard let quantizer = quantizers[point.name] else { continue }
            guard let observed = statistics.tensors[point.name], observed.count > 0 else {
                throw QuantizationError(place: point.name, problem: "no calibration statistics for this tensor",
                                        remedy: "calibrate again; the model changed since the statistics were gathered")
            }
            let levels = RangeEstimator.magnitudeLevels(bits: quantizer.bits, scheme: quantizer.scheme, statistics: observed)
            let range = estimator.range(from: observed, levels: levels)
            ranges[point.name] = range
            report.append(CalibratedTensor(name: point.name, range: range, observed: observed.minimum...observed.maximum))
        }
        ranges = sharingConcatenationRanges(ranges, in: ActivationQuantization.removingQuantizers(model))
        report = report.map { CalibratedTensor(name: $0.name, range: ranges[$0.name] ?? $0.range, observed: $0.observed) }
        ActivationQuantization.setRanges(&model, ranges)
        return report
    }

    /// A concatenation's inputs and output get one range, the union of theirs: a runtime joins
    /// integer tensors only when they share scale and zero point, so a quantized concat stores its
    /// inputs on one grid. Chains of concatenations (DenseNet) share transitively.
    static func sharingConcatenationRanges(_ ranges: [String: ClosedRange<Float>], in base: Model) -> [String: ClosedRange<Float>] {
        var parent: [String: String] = [:]
        func root(_ name: String) -> String {
            var current = name
            while let next = parent[current], next != current { current = next }
            return current
        }
        for node in base.nodes where node.operation == .concat {
            let members = ([node.name] + node.inputs.map { base.nodes[$0].name }).filter { ranges[$0] != nil }
            guard let first = members.first else { continue }
            for member in members.dropFirst() where root(member) != root(first) { parent[root(member)] = root(first) }
        }
        guard !parent.isEmpty else { return ranges }
        var unions: [String: ClosedRange<Float>] = [:]
        for (name, range) in ranges {
            let group = root(name)
            unions[group] = unions[group].map { min($0.lowerBound, range.lowerBound) ... max($0.upperBound, range.upperBound) } ?? range
        }
        var shared = ranges
        for name in ranges.keys { shared[name] = unions[root(name)] }
        return shared
    }

    /// FNV-1a over the graph: node names, operation kinds, parameters and weights (bit patterns),
    /// and the input normalization.
    public static func fingerprint(_ model: Model) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        func mix(_ value: UInt64) {
            hash = (hash ^ value) &* 0x0000_0100_0000_01b3
        }
        func mix(_ text: String) {
            for byte in text.utf8 { mix(UInt64(byte)) }
            mix(0xff)
        }
        func mix(_ values: [Float]) {
            mix(UInt64(values.count))
            for value in values { mix(UInt64(value.bitPattern)) }
        }
        func mix(_ tensor: Tensor?) {
            guard let tensor else { return mix(0xfeed) }
            for dimension in tensor.shape { mix(UInt64(dimension)) }
            mix(tensor.data)
        }
        mix(model.name)
        mix(model.normalization.mean)
        mix(model.normalization.std)
        for node in model.nodes {
            mix(node.name)
            for input in node.inputs { mix(UInt64(bitPattern: Int64(input))) }
            switch node.operation {
            case .conv(let conv):
                mix("conv \(conv.stride) \(conv.padding) \(conv.trailingPadding) \(conv.dilation) \(conv.groups)")
                mix(conv.weight)
                mix(conv.bias)
            case .linear(let linear):
                mix("linear")
                mix(linear.weight)
                mix(linear.bias)
            case .batchNorm(let norm):
                mix("batchnorm \(norm.epsilon)")
                mix(norm.gamma)
                mix(norm.beta)
                mix(norm.runningMean)
                mix(norm.runningVar)
            case .fakeQuantize(let quantizer):
                mix("fakequantize \(quantizer.bits) \(quantizer.scheme) \(String(describing: quantizer.range))")
            default:
                mix(String(describing: node.operation))
            }
        }
        return hash
    }
}
