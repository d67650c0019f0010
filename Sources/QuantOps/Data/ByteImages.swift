import Foundation

/// Images made in a session (distilled from a network) at any size, held as bytes in CHW order
/// like CIFAR's records, with one integer label each. CIFAR-sized images for ten classes are kept
/// as CIFAR-10 instead, so that `save data` can write them in that layout.
public struct ByteImages: LabeledImages {
    public var name: String
    public var imageShape: ImageShape
    public var classCount: Int
    public private(set) var labels: [Int]
    public private(set) var pixels: [UInt8]

    public init(name: String, imageShape: ImageShape, classCount: Int, labels: [Int], pixels: [UInt8]) throws {
        guard pixels.count == labels.count * imageShape.elementCount else {
            throw QuantizationError(place: name, problem: "\(pixels.count) pixel bytes for \(labels.count) images of \(imageShape)")
        }
        guard labels.allSatisfy({ $0 >= 0 && $0 < classCount }) else {
            throw QuantizationError(place: name, problem: "a label is outside 0..<\(classCount)")
        }
        self.name = name
        self.imageShape = imageShape
        self.classCount = classCount
        self.labels = labels
        self.pixels = pixels
    }

    public var count: Int { labels.count }
    public var contentIdentity: String? { nil }

    public func label(of index: Int) -> Int { labels[index] }

    public func batch(_ indices: [Int], normalization: Normalization) throws -> Tensor {
        let size = imageShape.elementCount, plane = imageShape.height * imageShape.width
        let tables = normalizationTables(normalization, channels: imageShape.channels)
        var data = [Float](repeating: 0, count: indices.count * size)
        for (position, image) in indices.enumerated() {
            guard image >= 0, image < count else {
                throw QuantizationError(place: name, problem: "image \(image) is outside 0..<\(count)")
            }
            for i in 0 ..< size {
                data[position * size + i] = tables[i / plane][Int(pixels[image * size + i])]
            }
        }
        return Tensor(shape: [indices.count, imageShape.channels, imageShape.height, imageShape.width], data: data)
    }

    public func sampleIndices(_ samples: Int, seed: UInt64) throws -> [Int] {
        Evaluation.sampleIndices(fileRecordCounts: [count], samples: samples, seed: seed)
    }

    public func requireRecords(_ needed: Int) throws {}
}
