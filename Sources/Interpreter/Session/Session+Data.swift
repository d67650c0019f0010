import CShims
import Foundation
import QuantOps

/// The data sets a recipe names: the standard ones by word (`cifar10`, `cifar100-train`), image
/// folders by path, and images made in the session (`distill`, `load data`).
extension Session {
    /// Names of the data sets read from the standard files.
    public static let standardDataSetNames = CIFAR10.knownNames + CIFAR100.knownNames

    /// Words the REPL offers after `load` and `eval`.
    public var completionWords: [String: [String]] {
        ["load": ModelZoo.entries.map(\.name), "eval": Self.standardDataSetNames + [ImageFolderName.word]]
    }

    /// A data set by name, read once per session.
    func dataset(named name: String) throws -> any LabeledImages {
        if let cached = datasets[name] { return cached }
        let dataset: any LabeledImages
        if CIFAR10.knownNames.contains(name) {
            dataset = try standardCIFAR(CIFAR10Layout.self, named: name)
        } else if CIFAR100.knownNames.contains(name) {
            dataset = try standardCIFAR(CIFAR100Layout.self, named: name)
        } else if let folder = ImageFolderName.folder(in: name) {
            return try imageFolder(folder, options: readingOptions(forFolder: folder))
        } else {
            let known = Self.standardDataSetNames + datasets.keys.sorted()
            throw CommandError("unknown data set '\(name)'",
                               hint: "known: " + known.joined(separator: ", ") + "; or a folder of images: \(ImageFolderName.word):DIR")
        }
        datasets[name] = dataset
        return dataset
    }

    private func standardCIFAR<Layout: CIFARLayout>(_ layout: Layout.Type, named name: String) throws -> CIFARBinary<Layout> {
        let progress = ProgressBar("downloading \(Layout.title)", sink: errors, enabled: settings.progress)
        defer { progress.finish() }
        let folder = try Fetcher.locateCIFAR(layout, in: dataDirectories, allowDownload: settings.allowDownload) { done, total in
            progress.update(done: Int(done), total: Int(total ?? 0))
        } shouldStop: { qsh_interrupt_requested() != 0 }
        return try CIFARBinary<Layout>.load(named: name, from: folder)
    }
}

/// How recipes name an image folder where a data set name goes: `imagefolder:DIR`, e.g.
/// `calibrate data="imagefolder:/data/imagenet/val"` (`eval` takes the folder as a second
/// word: `eval imagefolder "DIR"`).
enum ImageFolderName {
    static let word = "imagefolder"

    /// The folder of an `imagefolder:DIR` name, or nil for other names.
    static func folder(in name: String) -> String? {
        guard name.hasPrefix(word + ":") else { return nil }
        let folder = String(name.dropFirst(word.count + 1))
        return folder.isEmpty ? nil : folder
    }

    static func name(for folder: String) -> String { word + ":" + folder }
}

extension Session {
    /// `path` as given when it exists there; a relative path that does not is looked up in
    /// `directories` (the models or data search path: flag, environment variable, user cache),
    /// so recipes can name shared files without their location.
    func locate(_ path: String, in directories: [URL]) -> URL {
        let given = URL(fileURLWithPath: path)
        guard !FileManager.default.fileExists(atPath: given.path), !path.hasPrefix("/") else { return given }
        return directories.map { $0.appendingPathComponent(path) }.first { FileManager.default.fileExists(atPath: $0.path) } ?? given
    }

    /// How `folder` is read: as the last `eval imagefolder` of it said, else the defaults.
    func readingOptions(forFolder folder: String) -> ImageFolderOptions {
        imageFolderOptions[folder] ?? ImageFolderOptions()
    }

    /// The image folder `folder` read with `options`, from the session's cache when it was
    /// read with the same options. Unreadable files left out are reported on the error output.
    func imageFolder(_ folder: String, options: ImageFolderOptions) throws -> ImageFolder {
        let name = ImageFolderName.name(for: folder)
        if let cached = datasets[name] as? ImageFolder, cached.options == options { return cached }
        imageFolderOptions[folder] = options
        let dataset: ImageFolder
        do {
            dataset = try ImageFolder(name: name, root: locate(folder, in: dataDirectories), options: options)
        } catch let error as ImageFolderError {
            throw CommandError(error.description, hint: error.remedy)
        }
        if let first = dataset.skipped.first {
            let total = dataset.count + dataset.skipped.count
            errors.line("warning: skipped \(dataset.skipped.count) of \(total) image files in \(folder) that cannot be read "
                        + "(the first: \(first)); strict=true makes this an error")
        }
        datasets[name] = dataset
        return dataset
    }
}
