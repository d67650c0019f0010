import Foundation

/// CIFAR-10 images in the official binary layout: records of 1 label byte and 3072 pixel
/// bytes (R, G, B planes of 32x32, row-major). Pixels stay bytes until a batch is requested.
public struct CIFAR10: Sendable {
    public static let recordSize = 3073
    public static let imageSize = 3072
    public static let classes = 10
    public static let classNames = ["airplane", "automobile", "bird", "cat", "deer",
                                    "dog", "frog", "horse", "ship", "truck"]

    public var name: String
    public private(set) var labels: [UInt8]
    /// Image k occupies bytes `k*3072 ..< (k+1)*3072`.
    public private(set) var pixels: [UInt8]
    /// Records per file, in reading order. Samples are drawn from the first file first, so a
    /// sample that one training batch can supply is the same whichever later batches exist.
    public private(set) var fileRecordCounts: [Int]
    /// Files of this data set that were looked for and are absent (training batches 2-5 of a
    /// partial download), for the error that says why a sample is too large.
    public private(set) var missingFiles: [String] = []
    /// Where the missing files belong.
    public private(set) var folder: String?

    public var count: Int { labels.count }

    /// Dataset names and the files they read inside a `cifar-10-batches-bin` folder.
    public static let knownNames = ["cifar10", "cifar10-train"]

    /// `cifar10` is `test_batch.bin`; `cifar10-train` is every `data_batch_N.bin` present.
    public static func load(named name: String, from directory: URL) throws -> CIFAR10 {
        let files: [URL]
        switch name.lowercased() {
        case "cifar10":
            files = [directory.appendingPathComponent("test_batch.bin")]
        case "cifar10-train":
            // Every training batch present, in order: the official download has five.
            let all = trainingBatchNames.map { directory.appendingPathComponent($0) }
            files = all.filter { FileManager.default.fileExists(atPath: $0.path) }
            guard !files.isEmpty else {
                throw CIFAR10Error.missingFile(path: directory.appendingPathComponent("data_batch_1.bin").path,
                                               remedy: "put the CIFAR-10 binary training batches there or set QSH_DATA")
            }
            var dataset = try CIFAR10(name: "cifar10-train", files: files)
            dataset.missingFiles = all.filter { !FileManager.default.fileExists(atPath: $0.path) }.map(\.lastPathComponent)
            dataset.folder = directory.path
            return dataset
        default:
            throw CIFAR10Error.unknownDataset(name: name, known: knownNames)
        }
        var dataset = try CIFAR10(name: name.lowercased(), files: files)
        dataset.folder = directory.path
        return dataset
    }

    /// The official training batches, in the order samples draw from them.
    public static let trainingBatchNames = (1...5).map { "data_batch_\($0).bin" }

    /// `samples` record indices in file order, drawn without replacement by a seeded shuffle
    /// within each file, first file first (see `Evaluation.sampleIndices(fileRecordCounts:)`).
    /// More samples than the data set holds take every record, unless files are missing that
    /// would have supplied them: then the error names those files.
    public func sampleIndices(_ samples: Int, seed: UInt64 = 0) throws -> [Int] {
        if samples > count && !missingFiles.isEmpty {
            throw CIFAR10Error.tooFewRecords(dataset: name, requested: samples, available: count,
                                             missing: missingFiles, folder: folder ?? "the data folder")
        }
        return Evaluation.sampleIndices(fileRecordCounts: fileRecordCounts, samples: samples, seed: seed)
    }

    /// Fails when a prefix of `needed` records reaches past the files present and missing files
    /// would have held the rest, so that a partial download never silently gives a smaller run.
    public func requireRecords(_ needed: Int) throws {
        if needed > count && !missingFiles.isEmpty {
            throw CIFAR10Error.tooFewRecords(dataset: name, requested: needed, available: count,
                                             missing: missingFiles, folder: folder ?? "the data folder")
        }
    }

    public init(name: String, files: [URL]) throws {
        self.name = name
        labels = []
        pixels = []
        fileRecordCounts = []
        for file in files {
            guard FileManager.default.fileExists(atPath: file.path) else {
                throw CIFAR10Error.missingFile(path: file.path, remedy: "download cifar-10-binary.tar.gz and unpack it there, or set QSH_DATA to its folder")
            }
            let bytes: Data
            do { bytes = try Data(contentsOf: file) } catch {
                throw CIFAR10Error.unreadable(path: file.path, reason: error.localizedDescription)
            }
            try append(records: bytes, from: file.path)
        }
    }

    /// The records of one batch file already in memory; `name` names it in errors.
    public init(name: String, batch: Data) throws {
        self.name = name
        labels = []
        pixels = []
        fileRecordCounts = []
        try append(records: batch, from: name)
    }

    /// Images and labels already in memory, for tests and converted data.
    public init(name: String, labels: [UInt8], pixels: [UInt8]) throws {
        guard pixels.count == labels.count * Self.imageSize else {
            throw CIFAR10Error.malformed(path: name, problem: "\(pixels.count) pixel bytes for \(labels.count) labels; each image has \(Self.imageSize)")
        }
        if let bad = labels.firstIndex(where: { Int($0) >= Self.classes }) {
            throw CIFAR10Error.malformed(path: name, problem: "label \(labels[bad]) of image \(bad) is not a class 0-9")
        }
        self.name = name
        self.labels = labels
        self.pixels = pixels
        fileRecordCounts = [labels.count]
    }

    private mutating func append(records bytes: Data, from path: String) throws {
        guard !bytes.isEmpty else {
            throw CIFAR10Error.malformed(path: path, problem: "the file is empty; a CIFAR-10 binary batch holds \(Self.recordSize)-byte records")
        }
        guard bytes.count % Self.recordSize == 0 else {
            let whole = bytes.count / Self.recordSize
            throw CIFAR10Error.malformed(path: path, problem: "size \(bytes.count) bytes is not a positive multiple of the \(Self.recordSize)-byte record: "
                                         + "record \(whole) (from byte \(whole * Self.recordSize)) has only \(bytes.count % Self.recordSize) bytes; "
                                         + "the file is truncated or not a CIFAR-10 binary batch")
        }
        let records = bytes.count / Self.recordSize
        var newLabels = [UInt8](repeating: 0, count: records)
        var newPixels = [UInt8](repeating: 0, count: records * Self.imageSize)
        try bytes.withUnsafeBytes { (raw: UnsafeRawBufferPointer) in
            let source = raw.bindMemory(to: UInt8.self)
            try newPixels.withUnsafeMutableBufferPointer { target in
                for record in 0..<records {
                    let start = record * Self.recordSize
                    let label = source[start]
                    guard Int(label) < Self.classes else {
                        throw CIFAR10Error.malformed(path: path, problem: "record \(record) has label \(label); labels are 0-9, so this is not a CIFAR-10 file (CIFAR-100 records have 2 label bytes)")
                    }
                    newLabels[record] = label
                    UnsafeMutableRawPointer(target.baseAddress! + record * Self.imageSize)
                        .copyMemory(from: source.baseAddress! + start + 1, byteCount: Self.imageSize)
                }
            }
        }
        labels += newLabels
        pixels += newPixels
        fileRecordCounts.append(records)
    }

    /// The images at `indices` as a normalized float batch (N, 3, 32, 32): x/255, then
    /// (x - mean) / std per channel.
    public func batch(_ indices: some Collection<Int>, normalization: Normalization) -> Tensor {
        var mean = normalization.mean, std = normalization.std
        if mean.count != 3 { mean = [Float](repeating: mean.first ?? 0, count: 3) }
        if std.count != 3 { std = [Float](repeating: std.first ?? 1, count: 3) }
        // A table per channel, computed the way torchvision's ToTensor and Normalize round.
        let tables = (0..<3).map { channel in
            (0..<256).map { (Float($0) / 255 - mean[channel]) / std[channel] }
        }
        let plane = Self.imageSize / 3
        let indices = Array(indices)
        var data = [Float](repeating: 0, count: indices.count * Self.imageSize)
        pixels.withUnsafeBufferPointer { source in
            data.withUnsafeMutableBufferPointer { target in
                for (position, image) in indices.enumerated() {
                    for channel in 0..<3 {
                        let from = image * Self.imageSize + channel * plane
                        let to = position * Self.imageSize + channel * plane
                        let table = tables[channel]
                        for i in 0..<plane { target[to + i] = table[Int(source[from + i])] }
                    }
                }
            }
        }
        return Tensor(shape: [indices.count, 3, 32, 32], data: data)
    }
}

public enum CIFAR10Error: Error, CustomStringConvertible, Equatable {
    case unknownDataset(name: String, known: [String])
    case missingFile(path: String, remedy: String)
    case unreadable(path: String, reason: String)
    case malformed(path: String, problem: String)
    case tooFewRecords(dataset: String, requested: Int, available: Int, missing: [String], folder: String)

    public var description: String {
        switch self {
        case .unknownDataset(let name, let known):
            return "unknown dataset '\(name)'; known datasets: \(known.joined(separator: ", "))"
        case .missingFile(let path, let remedy):
            return "\(path): no such file; \(remedy)"
        case .unreadable(let path, let reason):
            return "\(path): cannot be read (\(reason))"
        case .malformed(let path, let problem):
            return "\(path): \(problem)"
        case .tooFewRecords(let dataset, let requested, let available, let missing, let folder):
            return "\(dataset) has \(available) images here and \(requested) were requested; "
                + "\(missing.joined(separator: ", ")) \(missing.count == 1 ? "is" : "are") missing from \(folder) "
                + "(unpack the official cifar-10-binary.tar.gz there, or ask for at most \(available))"
        }
    }
}
