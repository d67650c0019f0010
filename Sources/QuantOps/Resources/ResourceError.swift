import Foundation

/// Why a model or data file could not be found, fetched or verified, with what to do about it.
public enum ResourceError: Error, CustomStringConvertible, Sendable {
    /// Not in any search directory, and downloading was off or impossible (`reason`).
    case notFound(fileName: String, searched: [String], url: URL?, suggestedDirectory: String?, reason: String?)
    case httpStatus(fileName: String, url: URL, status: Int)
    case checksumMismatch(fileName: String, url: URL, algorithm: String, expected: String, actual: String)
    case noWritableDirectory(fileName: String, searched: [String])
    case unreadable(path: String, reason: String)
    case extractionFailed(archive: String, reason: String)
    case interrupted(fileName: String)

    public var description: String {
        switch self {
        case .notFound(let fileName, let searched, let url, let suggested, let reason):
            var text = "\(fileName) not found"
            if let reason { text += " (\(reason))" }
            text += "; looked in:\n" + searched.map { "  \($0)" }.joined(separator: "\n")
            let target = suggested ?? searched.last ?? "one of these directories"
            if let url {
                text += "\nDownload \(url.absoluteString)\nand put it at \(target)/\(fileName)"
            } else {
                text += "\nNo public download is known; copy \(fileName) into \(target) or point the search path at its folder"
            }
            return text
        case .httpStatus(let fileName, let url, let status):
            return "downloading \(fileName) failed: the server answered HTTP \(status) for \(url.absoluteString); check the URL or fetch the file by hand"
        case .checksumMismatch(let fileName, let url, let algorithm, let expected, let actual):
            return "downloaded \(fileName) from \(url.absoluteString) has \(algorithm) \(actual), expected \(expected); the download was deleted. Retry, or fetch it by hand and compare"
        case .noWritableDirectory(let fileName, let searched):
            return "cannot download \(fileName): none of these directories is writable:\n"
                + searched.map { "  \($0)" }.joined(separator: "\n")
                + "\nSet QSH_MODELS / QSH_DATA or XDG_CACHE_HOME to a writable folder"
        case .unreadable(let path, let reason):
            return "cannot read \(path): \(reason)"
        case .extractionFailed(let archive, let reason):
            return "cannot unpack \(archive): \(reason); unpack it by hand with tar -xzf"
        case .interrupted(let fileName):
            return "download of \(fileName) interrupted; nothing was kept"
        }
    }
}
