import Foundation

/// The size of one image as a network sees it (NCHW without the N).
public struct ImageShape: Sendable, Equatable, CustomStringConvertible {
    public var channels: Int
    public var height: Int
    public var width: Int

    public init(channels: Int, height: Int, width: Int) {
        self.channels = channels
        self.height = height
        self.width = width
    }

    public var elementCount: Int { channels * height * width }
    public var description: String { "\(channels)x\(height)x\(width)" }
}

/// A labelled image data set, as every command that reads images sees it: CIFAR-10, CIFAR-100,
/// a folder of image files, or images made in a session. Images are addressed by index in the
/// data set's own order (file order), and become float tensors only when a batch is requested.
public protocol LabeledImages: Sendable {
    /// The name it is known by in recipes (`cifar10`, `imagefolder:DIR`, `distilled`).
    var name: String { get }
    var count: Int { get }
    var classCount: Int { get }
    /// The shape of every image of a batch.
    var imageShape: ImageShape { get }
    /// The class index of image `index`, in `0..<classCount`.
    func label(of index: Int) -> Int
    /// The images at `indices` as a normalized float batch (N, C, H, W): x/255, then
    /// (x - mean) / std per channel, the way torchvision's ToTensor and Normalize compute it.
    func batch(_ indices: [Int], normalization: Normalization) throws -> Tensor
    /// `samples` indices drawn without replacement by a seeded shuffle, in file order.
    func sampleIndices(_ samples: Int, seed: UInt64) throws -> [Int]
    /// Fails when a prefix of `needed` images is more than the data set can give and the
    /// reason is something the user can fix (files missing from a partial download).
    func requireRecords(_ needed: Int) throws
    /// What identifies the contents on disk, for caches shared between processes; nil for
    /// images made in a session, which are never looked up on disk.
    var contentIdentity: String? { get }
}

extension LabeledImages {
    public func batch(_ indices: some Collection<Int>, normalization: Normalization) throws -> Tensor {
        try batch(Array(indices), normalization: normalization)
    }

    public func sampleIndices(_ samples: Int) throws -> [Int] {
        try sampleIndices(samples, seed: 0)
    }

    /// The labels of `indices`, in order.
    public func labels(of indices: some Sequence<Int>) -> [Int] {
        indices.map { label(of: $0) }
    }
}

/// Per-channel lookup tables from a byte to its normalized value, computed the way
/// torchvision's ToTensor and Normalize round: (Float(x) / 255 - mean) / std. A one-value
/// mean or std applies to every channel.
public func normalizationTables(_ normalization: Normalization, channels: Int) -> [[Float]] {
    var mean = normalization.mean, std = normalization.std
    if mean.count != channels { mean = [Float](repeating: mean.first ?? 0, count: channels) }
    if std.count != channels { std = [Float](repeating: std.first ?? 1, count: channels) }
    return (0..<channels).map { channel in
        (0..<256).map { (Float($0) / 255 - mean[channel]) / std[channel] }
    }
}
