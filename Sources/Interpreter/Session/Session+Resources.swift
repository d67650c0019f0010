import Foundation
import QuantOps

/// Where the session finds models and data: the `set`/flag directory, then the environment
/// variable, then the user cache.
extension Session {
    public func applySettings() {
        EngineSettings.threads = settings.threads
    }

    var modelDirectories: [URL] {
        ResourceDirectories(kind: .models, override: settings.modelsDirectory).searchPath
    }

    var dataDirectories: [URL] {
        ResourceDirectories(kind: .data, override: settings.dataDirectory).searchPath
    }

    /// Words the REPL offers after `load` and `eval`.
    public var completionWords: [String: [String]] {
        ["load": ModelZoo.entries.map(\.name), "eval": CIFAR10.knownNames]
    }

    /// A data set by name, read once per session.
    func dataset(named name: String) throws -> CIFAR10 {
        if let cached = datasets[name] { return cached }
        guard CIFAR10.knownNames.contains(name) else {
            let known = CIFAR10.knownNames + datasets.keys.sorted()
            throw CommandError("unknown data set '\(name)'", hint: "known: " + known.joined(separator: ", "))
        }
        let progress = ProgressBar("downloading CIFAR-10", sink: errors, enabled: settings.progress)
        defer { progress.finish() }
        let folder = try Fetcher.locateCIFAR10(in: dataDirectories, allowDownload: settings.allowDownload) { done, total in
            progress.update(done: Int(done), total: Int(total ?? 0))
        }
        let dataset = try CIFAR10.load(named: name, from: folder)
        datasets[name] = dataset
        return dataset
    }
}
