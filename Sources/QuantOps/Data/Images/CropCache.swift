import Foundation

/// Image files already decoded, resized and cropped (the bytes before normalization), kept for
/// the rest of the process up to a memory budget. A session evaluates and calibrates on the
/// same folder again and again (`eval`, quantize, `eval`, ...); decoding costs about as much
/// as running EfficientNet-Lite0 on the image. An entry is used only for the same file, size,
/// modification time and preprocessing, so an edited file is decoded again.
final class CropCache: @unchecked Sendable {
    static let shared = CropCache(budgetBytes: 1 << 30)

    struct Key: Hashable {
        var path: String
        var bytes: Int
        var modified: Double
        var resize: Int
        var crop: Int
        var filter: String
    }

    /// Bytes of crops kept at most: 1 GiB holds 21,000 crops at 224x224 (the ImageNet sample
    /// 20 times over); past it, new crops are not kept, and nothing is evicted, so a folder too
    /// large to keep costs what it did before.
    let budgetBytes: Int
    private let lock = NSLock()
    private var crops: [Key: [UInt8]] = [:]
    private var heldBytes = 0

    init(budgetBytes: Int) { self.budgetBytes = budgetBytes }

    /// The cache key of `path` under `preprocessing`; nil when the file cannot be examined (it is
    /// then decoded, and its error reported, as without a cache).
    static func key(_ path: String, _ preprocessing: ImagePreprocessing) -> Key? {
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: path),
              let size = attributes[.size] as? Int, let modified = attributes[.modificationDate] as? Date else { return nil }
        return Key(path: path, bytes: size, modified: modified.timeIntervalSince1970, resize: preprocessing.resize,
                   crop: preprocessing.crop, filter: preprocessing.filter.rawValue)
    }

    func crop(for key: Key) -> [UInt8]? {
        lock.lock()
        defer { lock.unlock() }
        return crops[key]
    }

    func keep(_ crop: [UInt8], for key: Key) {
        lock.lock()
        defer { lock.unlock() }
        guard crops[key] == nil, heldBytes + crop.count <= budgetBytes else { return }
        crops[key] = crop
        heldBytes += crop.count
    }

    /// Crops kept, for tests.
    var count: Int {
        lock.lock()
        defer { lock.unlock() }
        return crops.count
    }
}
