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
}
