import Foundation

/// Some images of another data set, by index, in the given order: a training set of `samples`
/// images drawn from a larger one ('finetune ait samples=N').
public struct SampledImages: LabeledImages {
    public let base: any LabeledImages
    public let indices: [Int]

    public init(_ base: any LabeledImages, indices: [Int]) {
        self.base = base
        self.indices = indices
    }

    public var name: String { base.name }
    public var count: Int { indices.count }
    public var classCount: Int { base.classCount }
    public var imageShape: ImageShape { base.imageShape }
    public var contentIdentity: String? { nil }

    public func label(of index: Int) -> Int { base.label(of: indices[index]) }

    public func batch(_ indices: [Int], normalization: Normalization) throws -> Tensor {
        try base.batch(indices.map { self.indices[$0] }, normalization: normalization)
    }

    public func sampleIndices(_ samples: Int, seed: UInt64) throws -> [Int] {
        Evaluation.sampleIndices(count: count, samples: min(samples, count), seed: seed)
    }

    public func requireRecords(_ needed: Int) throws {}
}
