import Foundation

/// What distinguishes the official CIFAR binary layouts: records of `labelBytes` label bytes
/// then 3072 pixel bytes (R, G, B planes of 32x32, row-major); the class is label byte
/// `labelIndex`.
public protocol CIFARLayout: Sendable {
    /// "CIFAR-10", for messages.
    static var title: String { get }
    static var labelBytes: Int { get }
    static var labelIndex: Int { get }
    static var classes: Int { get }
    /// The test set's name and the training set's name in recipes.
    static var testName: String { get }
    static var trainingName: String { get }
    /// Files inside `folderName`: the test set, then the training files in sampling order.
    static var testFiles: [String] { get }
    static var trainingFiles: [String] { get }
    static var folderName: String { get }
    static var archive: RemoteFile { get }
}

public enum CIFAR10Layout: CIFARLayout {
    public static let title = "CIFAR-10"
    public static let labelBytes = 1
    public static let labelIndex = 0
    public static let classes = 10
    public static let testName = "cifar10"
    public static let trainingName = "cifar10-train"
    public static let testFiles = ["test_batch.bin"]
    /// The official download has five training batches.
    public static let trainingFiles = (1...5).map { "data_batch_\($0).bin" }
    public static var folderName: String { KnownFiles.cifar10Folder }
    public static var archive: RemoteFile { KnownFiles.cifar10Archive }
}

/// CIFAR-100 records carry a coarse (20 superclasses) and a fine (100 classes) label byte; the
/// fine label is the class, as in torchvision's CIFAR100.
public enum CIFAR100Layout: CIFARLayout {
    public static let title = "CIFAR-100"
    public static let labelBytes = 2
    public static let labelIndex = 1
    public static let classes = 100
    public static let testName = "cifar100"
    public static let trainingName = "cifar100-train"
    public static let testFiles = ["test.bin"]
    public static let trainingFiles = ["train.bin"]
    public static var folderName: String { KnownFiles.cifar100Folder }
    public static var archive: RemoteFile { KnownFiles.cifar100Archive }
}

public typealias CIFAR10 = CIFARBinary<CIFAR10Layout>
public typealias CIFAR100 = CIFARBinary<CIFAR100Layout>

/// CIFAR images in an official binary layout. Pixels stay bytes until a batch is requested.
public struct CIFARBinary<Layout: CIFARLayout>: LabeledImages {
    public static var recordSize: Int { Layout.labelBytes + imageSize }
    public static var imageSize: Int { 3072 }
    public static var classes: Int { Layout.classes }

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
    public var classCount: Int { Layout.classes }
    public var imageShape: ImageShape { ImageShape(channels: 3, height: 32, width: 32) }
    public func label(of index: Int) -> Int { Int(labels[index]) }

    /// Only the standard data sets have contents that a name and the files present identify.
    public var contentIdentity: String? {
        Self.knownNames.contains(name) ? "records \(fileRecordCounts)" : nil
    }

    /// Dataset names and the files they read inside the layout's folder.
    public static var knownNames: [String] { [Layout.testName, Layout.trainingName] }

    /// The test name reads the test file; the training name reads every training file present.
    public static func load(named name: String, from directory: URL) throws -> Self {
        switch name.lowercased() {
        case Layout.testName:
            var dataset = try Self(name: Layout.testName, files: Layout.testFiles.map { directory.appendingPathComponent($0) })
            dataset.folder = directory.path
            return dataset
        case Layout.trainingName:
            // Every training file present, in order.
            let all = trainingBatchNames.map { directory.appendingPathComponent($0) }
            let files = all.filter { FileManager.default.fileExists(atPath: $0.path) }
            guard !files.isEmpty else {
                throw CIFAR10Error.missingFile(path: all[0].path,
                                               remedy: "put the \(Layout.title) binary training \(all.count == 1 ? "file" : "batches") there or set QSH_DATA")
            }
            var dataset = try Self(name: Layout.trainingName, files: files)
            dataset.missingFiles = all.filter { !FileManager.default.fileExists(atPath: $0.path) }.map(\.lastPathComponent)
            dataset.folder = directory.path
            return dataset
        default:
            throw CIFAR10Error.unknownDataset(name: name, known: knownNames)
        }
    }

    /// The official training files, in the order samples draw from them.
    public static var trainingBatchNames: [String] { Layout.trainingFiles }

    /// `samples` record indices in file order, drawn without replacement by a seeded shuffle
    /// within each file, first file first (see `Evaluation.sampleIndices(fileRecordCounts:)`).
    /// More samples than the data set holds take every record, unless files are missing that
    /// would have supplied them: then the error names those files.
    public func sampleIndices(_ samples: Int, seed: UInt64 = 0) throws -> [Int] {
        try requireRecords(samples)
        return Evaluation.sampleIndices(fileRecordCounts: fileRecordCounts, samples: samples, seed: seed)
    }

    /// Fails when a prefix of `needed` records reaches past the files present and missing files
    /// would have held the rest, so that a partial download never silently gives a smaller run.
    public func requireRecords(_ needed: Int) throws {
        if needed > count && !missingFiles.isEmpty {
            throw CIFAR10Error.tooFewRecords(dataset: name, requested: needed, available: count,
                                             missing: missingFiles, folder: folder ?? "the data folder",
                                             archive: Layout.archive.fileName)
        }
    }

    public init(name: String, files: [URL]) throws {
        self.name = name
        labels = []
        pixels = []
        fileRecordCounts = []
        for file in files {
            guard FileManager.default.fileExists(atPath: file.path) else {
                throw CIFAR10Error.missingFile(path: file.path, remedy: "download \(Layout.archive.fileName) and unpack it there, or set QSH_DATA to its folder")
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
            throw CIFAR10Error.malformed(path: name, problem: "label \(labels[bad]) of image \(bad) is not a class 0-\(Self.classes - 1)")
        }
        self.name = name
        self.labels = labels
        self.pixels = pixels
        fileRecordCounts = [labels.count]
    }

    private mutating func append(records bytes: Data, from path: String) throws {
        let recordSize = Self.recordSize
        guard !bytes.isEmpty else {
            throw CIFAR10Error.malformed(path: path, problem: "the file is empty; a \(Layout.title) binary batch holds \(recordSize)-byte records")
        }
        guard bytes.count % recordSize == 0 else {
            let whole = bytes.count / recordSize
            throw CIFAR10Error.malformed(path: path, problem: "size \(bytes.count) bytes is not a positive multiple of the \(recordSize)-byte record: "
                                         + "record \(whole) (from byte \(whole * recordSize)) has only \(bytes.count % recordSize) bytes; "
                                         + "the file is truncated or not a \(Layout.title) binary batch")
        }
        let records = bytes.count / recordSize
        var newLabels = [UInt8](repeating: 0, count: records)
        var newPixels = [UInt8](repeating: 0, count: records * Self.imageSize)
        try bytes.withUnsafeBytes { (raw: UnsafeRawBufferPointer) in
            let source = raw.bindMemory(to: UInt8.self)
            try newPixels.withUnsafeMutableBufferPointer { target in
                for record in 0..<records {
                    let start = record * recordSize
                    let label = source[start + Layout.labelIndex]
                    guard Int(label) < Self.classes else {
                        throw CIFAR10Error.malformed(path: path, problem: "record \(record) has label \(label); labels are 0-\(Self.classes - 1), "
                                                     + "so this is not a \(Layout.title) file" + Self.otherLayoutHint)
                    }
                    newLabels[record] = label
                    UnsafeMutableRawPointer(target.baseAddress! + record * Self.imageSize)
                        .copyMemory(from: source.baseAddress! + start + Layout.labelBytes, byteCount: Self.imageSize)
                }
            }
        }
        labels += newLabels
        pixels += newPixels
        fileRecordCounts.append(records)
    }

    /// Reading one layout's file as the other is the likely mistake behind an out-of-range label.
    private static var otherLayoutHint: String {
        Layout.labelBytes == 1 ? " (CIFAR-100 records have 2 label bytes)" : " (CIFAR-10 records have 1 label byte)"
    }

    /// The images at `indices` as a normalized float batch (N, 3, 32, 32): x/255, then
    /// (x - mean) / std per channel.
    public func batch(_ indices: [Int], normalization: Normalization) -> Tensor {
        let tables = normalizationTables(normalization, channels: 3)
        let plane = Self.imageSize / 3
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

extension CIFARBinary where Layout == CIFAR10Layout {
    public static var classNames: [String] {
        ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    }
}

/// Errors of the CIFAR readers (both layouts; the name is CIFAR-10's, which came first).
public enum CIFAR10Error: Error, CustomStringConvertible, Equatable {
    case unknownDataset(name: String, known: [String])
    case missingFile(path: String, remedy: String)
    case unreadable(path: String, reason: String)
    case malformed(path: String, problem: String)
    case tooFewRecords(dataset: String, requested: Int, available: Int, missing: [String], folder: String, archive: String)

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
        case .tooFewRecords(let dataset, let requested, let available, let missing, let folder, let archive):
            return "\(dataset) has \(available) images here and \(requested) were requested; "
                + "\(missing.joined(separator: ", ")) \(missing.count == 1 ? "is" : "are") missing from \(folder) "
                + "(unpack the official \(archive) there, or ask for at most \(available))"
        }
    }
}
