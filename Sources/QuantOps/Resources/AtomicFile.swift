import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Files appear whole or not at all: content goes to a hidden temporary file beside the target
/// (same directory, hence same file system) and is renamed over it only once complete and
/// flushed, so an interrupted write never leaves a half file under the real name.
enum AtomicFile {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// A fresh hidden temporary path in the directory of `url`.
    static func temporaryURL(beside url: URL) -> URL {
        url.deletingLastPathComponent()
            .appendingPathComponent(".\(url.lastPathComponent).\(UUID().uuidString).partial")
    }

    /// Flushes `temporary` to disk and renames it to `destination`, replacing any existing file.
    /// On failure the temporary file is removed.
    static func commit(_ temporary: URL, to destination: URL) throws {
        do {
            let handle = try FileHandle(forUpdating: temporary)
            defer { try? handle.close() }
            try handle.synchronize()
        } catch {
            try? FileManager.default.removeItem(at: temporary)
            throw Failure(description: "cannot flush \(temporary.path): \(error.localizedDescription)")
        }
        guard rename(temporary.path, destination.path) == 0 else {
            let reason = String(cString: strerror(errno))
            try? FileManager.default.removeItem(at: temporary)
            throw Failure(description: "cannot rename \(temporary.lastPathComponent) to \(destination.path): \(reason)")
        }
    }

    /// Writes `data` to `destination` atomically.
    static func write(_ data: Data, to destination: URL) throws {
        let temporary = temporaryURL(beside: destination)
        do {
            try data.write(to: temporary)
        } catch {
            try? FileManager.default.removeItem(at: temporary)
            throw Failure(description: "cannot write \(destination.path): \(error.localizedDescription)")
        }
        try commit(temporary, to: destination)
    }
}
