import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Files appear whole or not at all: content goes to a hidden temporary file beside the target
/// (same directory, hence same file system) and is renamed over it only once complete and
/// flushed, so an interrupted write never leaves a half file under the real name, and a failed
/// one (full disk, file-size limit, missing directory) leaves the old file as it was and removes
/// the temporary file. A process killed outright (SIGKILL) cannot clean up; the temporary file
/// carries the writer's host and process id, and the next write of the same file removes the
/// ones whose writer is gone.
public enum AtomicFile {
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
        /// The system's reason alone, e.g. "File too large".
        public var reason: String { description.components(separatedBy: ": ").last ?? description }
    }

    /// A fresh hidden temporary path in the directory of `url`:
    /// `.NAME.HOST-PID.UNIQUE.partial`.
    public static func temporaryURL(beside url: URL) -> URL {
        let unique = UUID().uuidString.prefix(8)
        return url.deletingLastPathComponent()
            .appendingPathComponent(".\(url.lastPathComponent).\(hostName)-\(getpid()).\(unique).partial")
    }

    static var hostName: String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count - 1) == 0 else { return "host" }
        let name = String(cString: buffer).filter { $0.isLetter || $0.isNumber || $0 == "-" }
        return name.isEmpty ? "host" : name
    }

    /// Removes temporary files of earlier writes of `url` whose process, on this host, has died.
    public static func removeAbandonedTemporaries(beside url: URL) {
        let directory = url.deletingLastPathComponent()
        let prefix = ".\(url.lastPathComponent).\(hostName)-"
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory.path) else { return }
        for name in names where name.hasPrefix(prefix) && name.hasSuffix(".partial") {
            let rest = name.dropFirst(prefix.count)
            guard let dot = rest.firstIndex(of: "."), let pid = pid_t(rest[..<dot]), pid > 0 else { continue }
            if kill(pid, 0) != 0 && errno == ESRCH {
                try? FileManager.default.removeItem(at: directory.appendingPathComponent(name))
            }
        }
    }

    /// Flushes `temporary` to disk and renames it to `destination`, replacing any existing file.
    /// On failure the temporary file is removed.
    public static func commit(_ temporary: URL, to destination: URL) throws {
        let descriptor = open(temporary.path, O_RDONLY)
        if descriptor < 0 || fsync(descriptor) != 0 {
            let reason = String(cString: strerror(errno))
            if descriptor >= 0 { close(descriptor) }
            unlink(temporary.path)
            throw Failure(description: "cannot write \(destination.path): \(reason)")
        }
        close(descriptor)
        guard rename(temporary.path, destination.path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temporary.path)
            throw Failure(description: "cannot write \(destination.path): \(reason)")
        }
    }

    /// Writes `data` to `destination` atomically. The error names `destination` and the reason
    /// (e.g. "File too large", "No space left on device", "Not a directory").
    public static func write(_ data: Data, to destination: URL) throws {
        removeAbandonedTemporaries(beside: destination)
        let temporary = temporaryURL(beside: destination)
        let descriptor = open(temporary.path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o666)
        guard descriptor >= 0 else {
            throw Failure(description: "cannot write \(destination.path): \(String(cString: strerror(errno)))")
        }
        var failure: Int32 = 0
        data.withUnsafeBytes { (bytes: UnsafeRawBufferPointer) in
            var offset = 0
            while offset < bytes.count {
                let written = posixWrite(descriptor, bytes.baseAddress! + offset, bytes.count - offset)
                if written < 0 {
                    if errno == EINTR { continue }
                    failure = errno
                    return
                }
                offset += written
            }
        }
        if failure == 0 && fsync(descriptor) != 0 { failure = errno }
        if close(descriptor) != 0 && failure == 0 { failure = errno }
        guard failure == 0 else {
            unlink(temporary.path)
            throw Failure(description: "cannot write \(destination.path): \(String(cString: strerror(failure)))")
        }
        guard rename(temporary.path, destination.path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temporary.path)
            throw Failure(description: "cannot write \(destination.path): \(reason)")
        }
    }

    /// Writes `text` as UTF-8 to `path` atomically.
    public static func write(_ text: String, toPath path: String) throws {
        try write(Data(text.utf8), to: URL(fileURLWithPath: path))
    }
}

/// The C `write`, which `AtomicFile.write` hides inside the type.
private func posixWrite(_ descriptor: Int32, _ bytes: UnsafeRawPointer, _ count: Int) -> Int {
    write(descriptor, bytes, count)
}
