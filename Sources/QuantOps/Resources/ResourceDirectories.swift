import Foundation

/// Where models and data sets are looked for, in order: an explicit override (command-line flag
/// or `set models=`), then `QSH_MODELS` / `QSH_DATA`, then the per-user cache
/// `$XDG_CACHE_HOME/qsh/{models,data}` or `~/.cache/qsh/{models,data}`. Downloads go to the
/// first of these that is writable, normally the cache.
public struct ResourceDirectories: Sendable {
    public enum Kind: String, Sendable {
        case models
        case data

        public var environmentVariable: String { self == .models ? "QSH_MODELS" : "QSH_DATA" }
    }

    public var kind: Kind
    public var override: String?
    public var environment: [String: String]
    public var homeDirectory: String

    public init(
        kind: Kind, override: String? = nil,
        environment: [String: String] = ProcessInfo.processInfo.environment,
        homeDirectory: String = NSHomeDirectory()
    ) {
        self.kind = kind
        self.override = override
        self.environment = environment
        self.homeDirectory = homeDirectory
    }

    /// The per-user cache for this kind; it need not exist yet.
    public var userCache: URL {
        let base: URL
        if let xdg = environment["XDG_CACHE_HOME"], xdg.hasPrefix("/") {
            base = URL(fileURLWithPath: xdg, isDirectory: true)
        } else {
            base = URL(fileURLWithPath: homeDirectory, isDirectory: true).appendingPathComponent(".cache")
        }
        return base.appendingPathComponent("qsh").appendingPathComponent(kind.rawValue, isDirectory: true)
    }

    /// Each directory with where it came from, for messages.
    public var labeledSearchPath: [(directory: URL, origin: String)] {
        var result: [(URL, String)] = []
        if let override, !override.isEmpty {
            result.append((URL(fileURLWithPath: expandingTilde(override), isDirectory: true), "set \(kind.rawValue)= / --\(kind.rawValue)"))
        }
        // Like PATH, the variable may list several directories separated by colons.
        if let value = environment[kind.environmentVariable] {
            for path in value.split(separator: ":") where !path.isEmpty {
                result.append((URL(fileURLWithPath: expandingTilde(String(path)), isDirectory: true), kind.environmentVariable))
            }
        }
        result.append((userCache, "user cache"))
        var seen = Set<String>()
        return result.filter { seen.insert($0.0.standardizedFileURL.path).inserted }
    }

    public var searchPath: [URL] { labeledSearchPath.map(\.directory) }

    private func expandingTilde(_ path: String) -> String {
        if path == "~" { return homeDirectory }
        if path.hasPrefix("~/") { return homeDirectory + path.dropFirst() }
        return path
    }
}
