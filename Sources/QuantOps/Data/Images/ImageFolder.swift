import Foundation

/// How an image folder becomes network input, and how strictly it is read.
public struct ImageFolderOptions: Sendable, Equatable, CustomStringConvertible {
    public var preprocessing: ImagePreprocessing
    /// Whether an unreadable image file is an error (naming it) rather than left out.
    public var strict: Bool
    /// A text file of `relative/path label` lines that lists the images and their classes
    /// instead of the class subfolders (relative to the folder unless absolute).
    public var labelsFile: String?

    public init(preprocessing: ImagePreprocessing = ImagePreprocessing(), strict: Bool = false, labelsFile: String? = nil) {
        self.preprocessing = preprocessing
        self.strict = strict
        self.labelsFile = labelsFile
    }

    public var description: String {
        "\(preprocessing)" + (strict ? " strict=true" : "") + (labelsFile.map { " labels=\"\($0)\"" } ?? "")
    }
}

/// A folder of JPEG and PNG images, in torchvision's `ImageFolder` convention: each
/// subfolder is a class, the classes are the subfolder names sorted (their index is the
/// label), files directly in the folder are not images of any class, and the images of a class
/// are the `.jpg`, `.jpeg` and `.png` files (any case) below its subfolder, in the order
/// torchvision visits them (folders sorted by path, files sorted within a folder). Or, with a
/// labels file, the images and labels that file lists, in its order.
///
/// Only paths and labels are kept: images are decoded when a batch asks for them, so a folder of
/// any size costs memory only for the batches in flight. When the folder is read, every file's
/// header is checked; files that are not readable JPEG or PNG images are left out and listed in
/// `skipped` (or, with `strict`, the first is an error).
public struct ImageFolder: LabeledImages {
    public static let imageExtensions: Set<String> = ["jpg", "jpeg", "png"]

    public let name: String
    public let root: URL
    public let options: ImageFolderOptions
    /// Class names by label: the subfolder names, or `"0"`, `"1"`, ... from a labels file.
    public let classNames: [String]
    /// Image paths relative to `root` (absolute where a labels file gave them so), in order.
    public let files: [String]
    private let fileLabels: [Int]
    /// The image files left out because they could not be read, in order.
    public let skipped: [ImageDecodingError]

    public var count: Int { files.count }
    public var classCount: Int { classNames.count }
    public var imageShape: ImageShape {
        ImageShape(channels: 3, height: options.preprocessing.crop, width: options.preprocessing.crop)
    }
    public func label(of index: Int) -> Int { fileLabels[index] }
    public var contentIdentity: String? { "image folder \(root.path): \(files.count) images, \(options)" }

    public func path(of index: Int) -> String {
        files[index].hasPrefix("/") ? files[index] : root.appendingPathComponent(files[index]).path
    }

    public init(name: String, root: URL, options: ImageFolderOptions = ImageFolderOptions()) throws {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: root.path, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw ImageFolderError.notAFolder(path: root.path)
        }
        self.name = name
        self.root = root
        self.options = options
        var candidates: [(file: String, label: Int)]
        if let labelsFile = options.labelsFile {
            let listed = try Self.readLabelsFile(labelsFile, root: root)
            candidates = listed
            let classes = (listed.map(\.label).max() ?? -1) + 1
            classNames = (0..<classes).map(String.init)
        } else {
            let classes = try Self.sortedEntries(of: root).filter { Self.isFolder(root.appendingPathComponent($0)) }
            guard !classes.isEmpty else { throw ImageFolderError.noClassFolders(path: root.path) }
            classNames = classes
            candidates = []
            for (label, folder) in classes.enumerated() {
                for file in try Self.imageFiles(under: folder, root: root) { candidates.append((file, label)) }
            }
        }
        guard !candidates.isEmpty else {
            throw ImageFolderError.noImages(path: root.path, classes: classNames.count)
        }
        // Every header is read (in parallel, results kept in order) so that unreadable files are
        // known before a run starts, and never shift the images of a batch.
        let paths = candidates.map { $0.file.hasPrefix("/") ? $0.file : root.appendingPathComponent($0.file).path }
        let problems = Self.unreadableFiles(paths)
        if options.strict, let first = problems.compactMap({ $0 }).first {
            throw ImageFolderError.unreadable(first)
        }
        var kept: [String] = [], labels: [Int] = [], skipped: [ImageDecodingError] = []
        for (index, candidate) in candidates.enumerated() {
            if let problem = problems[index] {
                skipped.append(problem)
            } else {
                kept.append(candidate.file)
                labels.append(candidate.label)
            }
        }
        guard !kept.isEmpty else { throw ImageFolderError.noReadableImages(path: root.path, first: skipped[0]) }
        files = kept
        fileLabels = labels
        self.skipped = skipped
    }

    /// For each path, why its header cannot be read, or nil.
    private static func unreadableFiles(_ paths: [String]) -> [ImageDecodingError?] {
        let results = UnsafeMutableBufferPointer<ImageDecodingError?>.allocate(capacity: paths.count)
        results.initialize(repeating: nil)
        defer { results.deallocate() }
        nonisolated(unsafe) let slots = results
        DispatchQueue.concurrentPerform(iterations: paths.count) { index in
            do { _ = try ImageDecoding.size(of: paths[index]) } catch let error as ImageDecodingError {
                slots[index] = error
            } catch {
                slots[index] = ImageDecodingError(path: paths[index], reason: String(describing: error))
            }
        }
        return Array(results)
    }

    static func isFolder(_ url: URL) -> Bool {
        var isDirectory: ObjCBool = false
        return FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) && isDirectory.boolValue
    }

    /// Entry names sorted by code point, as Python's `sorted` orders strings.
    static func sortedEntries(of folder: URL) throws -> [String] {
        do {
            return try FileManager.default.contentsOfDirectory(atPath: folder.path)
                .sorted { $0.unicodeScalars.lexicographicallyPrecedes($1.unicodeScalars) }
        } catch {
            throw ImageFolderError.unlistable(path: folder.path, reason: error.localizedDescription)
        }
    }

    /// The image files below `root/folder`, relative to `root`, in torchvision's order:
    /// `sorted(os.walk(folder, followlinks=True))` visits folders sorted by path, and each
    /// folder's file names sorted.
    static func imageFiles(under folder: String, root: URL) throws -> [String] {
        var folders: [String] = []
        var pending = [folder]
        var visited = Set<String>()
        while let next = pending.popLast() {
            // A link back up the tree would otherwise be walked forever.
            let real = root.appendingPathComponent(next).resolvingSymlinksInPath().path
            guard visited.insert(real).inserted else { continue }
            folders.append(next)
            for entry in try sortedEntries(of: root.appendingPathComponent(next))
            where isFolder(root.appendingPathComponent(next).appendingPathComponent(entry)) {
                pending.append(next + "/" + entry)
            }
        }
        folders.sort { $0.unicodeScalars.lexicographicallyPrecedes($1.unicodeScalars) }
        var files: [String] = []
        for relative in folders {
            let url = root.appendingPathComponent(relative)
            for entry in try sortedEntries(of: url) where !isFolder(url.appendingPathComponent(entry)) {
                if imageExtensions.contains((entry as NSString).pathExtension.lowercased()) {
                    files.append(relative + "/" + entry)
                }
            }
        }
        return files
    }

    /// The `relative/path label` lines of a labels file. Blank lines and lines starting with
    /// `#` are skipped; the label is the last word, so paths may contain spaces.
    static func readLabelsFile(_ labelsFile: String, root: URL) throws -> [(file: String, label: Int)] {
        let url = labelsFile.hasPrefix("/") ? URL(fileURLWithPath: labelsFile) : root.appendingPathComponent(labelsFile)
        let text: String
        do { text = try String(contentsOf: url, encoding: .utf8) } catch {
            throw ImageFolderError.labelsFile(path: url.path, line: 0, problem: "cannot be read (\(error.localizedDescription))")
        }
        var entries: [(file: String, label: Int)] = []
        for (number, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = rawLine.trimmingCharacters(in: .whitespacesAndNewlines)
            if line.isEmpty || line.hasPrefix("#") { continue }
            guard let split = line.lastIndex(where: { $0 == " " || $0 == "\t" }) else {
                throw ImageFolderError.labelsFile(path: url.path, line: number + 1, problem: "'\(line)' is not 'relative/path label'")
            }
            let file = line[..<split].trimmingCharacters(in: .whitespaces)
            let labelText = line[line.index(after: split)...]
            guard let label = Int(labelText), label >= 0 else {
                throw ImageFolderError.labelsFile(path: url.path, line: number + 1, problem: "label '\(labelText)' is not a class index 0, 1, 2, ...")
            }
            let path = file.hasPrefix("/") ? file : root.appendingPathComponent(file).path
            guard FileManager.default.fileExists(atPath: path) else {
                throw ImageFolderError.labelsFile(path: url.path, line: number + 1, problem: "\(path) does not exist")
            }
            entries.append((file, label))
        }
        return entries
    }

    /// Decodes, resizes and crops the images at `indices` in parallel (or takes the crops an
    /// earlier batch kept: `CropCache`), then normalizes them.
    public func batch(_ indices: [Int], normalization: Normalization) throws -> Tensor {
        let crop = options.preprocessing.crop
        let plane = crop * crop
        let tables = normalizationTables(normalization, channels: 3)
        var data = [Float](repeating: 0, count: indices.count * 3 * plane)
        let failures = UnsafeMutableBufferPointer<ImageDecodingError?>.allocate(capacity: indices.count)
        failures.initialize(repeating: nil)
        defer { failures.deallocate() }
        nonisolated(unsafe) let failureSlots = failures
        let preprocessing = options.preprocessing
        data.withUnsafeMutableBufferPointer { buffer in
            nonisolated(unsafe) let target = buffer
            // Decoding is prefetched while the engine runs the batch before on its OpenMP team,
            // so it takes Dispatch's threads rather than the engine's `parallelFor`.
            DispatchQueue.concurrentPerform(iterations: indices.count) { position in
                let path = self.path(of: indices[position])
                let key = CropCache.key(path, preprocessing)
                let cropped: [UInt8]
                if let key, let kept = CropCache.shared.crop(for: key) {
                    cropped = kept
                } else {
                    let image: RGBImage
                    do { image = try ImageDecoding.rgb(path) } catch {
                        failureSlots[position] = error as? ImageDecodingError ?? ImageDecodingError(path: path, reason: "\(error)")
                        return
                    }
                    cropped = preprocessing.apply(image).pixels
                    if let key { CropCache.shared.keep(cropped, for: key) }
                }
                let base = position * 3 * plane
                cropped.withUnsafeBufferPointer { pixels in
                    for channel in 0..<3 {
                        let table = tables[channel]
                        let out = base + channel * plane
                        for i in 0..<plane { target[out + i] = table[Int(pixels[i * 3 + channel])] }
                    }
                }
            }
        }
        if let failure = failures.compactMap({ $0 }).first {
            throw ImageFolderError.damaged(failure)
        }
        return Tensor(shape: [indices.count, 3, crop, crop], data: data)
    }

    public func sampleIndices(_ samples: Int, seed: UInt64 = 0) throws -> [Int] {
        Evaluation.sampleIndices(count: count, samples: samples, seed: seed)
    }

    /// Every image of the folder is present; a limit beyond them takes them all.
    public func requireRecords(_ needed: Int) throws {}
}

public enum ImageFolderError: Error, CustomStringConvertible, Equatable {
    case notAFolder(path: String)
    case unlistable(path: String, reason: String)
    case noClassFolders(path: String)
    case noImages(path: String, classes: Int)
    case noReadableImages(path: String, first: ImageDecodingError)
    case labelsFile(path: String, line: Int, problem: String)
    /// A header that could not be read (with strict=true).
    case unreadable(ImageDecodingError)
    /// A file whose header read but whose image data did not decode.
    case damaged(ImageDecodingError)

    public var description: String {
        switch self {
        case .notAFolder(let path):
            return "\(path): no such folder"
        case .unlistable(let path, let reason):
            return "\(path): cannot be listed (\(reason))"
        case .noClassFolders(let path):
            return "\(path) has no subfolders; an image folder holds one subfolder of images per class"
        case .noImages(let path, let classes):
            return "\(path): no .jpg, .jpeg or .png files in its \(classes) class folder\(classes == 1 ? "" : "s")"
        case .noReadableImages(let path, let first):
            return "\(path): none of its image files can be read (the first: \(first))"
        case .labelsFile(let path, let line, let problem):
            return line > 0 ? "\(path) line \(line): \(problem)" : "\(path): \(problem)"
        case .unreadable(let error):
            return "\(error)"
        case .damaged(let error):
            return "\(error)"
        }
    }

    /// What to do about it.
    public var remedy: String {
        switch self {
        case .notAFolder: return "give the folder that holds one subfolder per class (torchvision's ImageFolder layout)"
        case .unlistable: return "check the folder's permissions"
        case .noClassFolders, .noImages:
            return "put each class's images in a subfolder named after the class, or list them with labels=\"FILE\" (lines 'relative/path label')"
        case .noReadableImages: return "the files must be JPEG or PNG images"
        case .labelsFile: return "each line of a labels file is 'relative/path label', the label a class index from 0"
        case .unreadable: return "remove or replace the file, or leave out strict=true to skip unreadable files"
        case .damaged: return "the file's header reads but its image data is damaged: remove or replace the file"
        }
    }
}
