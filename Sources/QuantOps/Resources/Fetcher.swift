import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Finds model and data files in the search directories and, when allowed, downloads missing ones
/// into the first writable directory: verified against their digest and moved into place only
/// when complete.
public enum Fetcher {
    /// A download that receives nothing for this long is abandoned.
    public static let idleTimeout: TimeInterval = 60
    /// Upper bound on a whole download (the 170 MB CIFAR-10 archive on a slow line).
    public static let totalTimeout: TimeInterval = 3 * 3600

    /// The first existing `directory/fileName`, in search order.
    public static func find(_ file: RemoteFile, in directories: [URL]) -> URL? {
        directories.lazy
            .map { $0.appendingPathComponent(file.fileName) }
            .first { FileManager.default.fileExists(atPath: $0.path) }
    }

    /// Finds `file` in `directories`; if absent and `allowDownload`, downloads it into the first
    /// writable directory. `progress` receives bytes so far and the total when known, on the
    /// calling thread; without one, a bar is drawn on stderr when it is a terminal. A download
    /// polls `shouldStop` (e.g. the caller's Ctrl-C flag) and is abandoned when it returns true.
    public static func locate(
        _ file: RemoteFile, in directories: [URL], allowDownload: Bool,
        progress: ((Int64, Int64?) -> Void)? = nil, shouldStop: @escaping () -> Bool = { false }
    ) throws -> URL {
        if let found = find(file, in: directories) { return found }
        let searched = directories.map(\.path)
        guard allowDownload, let url = file.url else {
            throw ResourceError.notFound(
                fileName: file.fileName, searched: searched, url: file.url,
                suggestedDirectory: suggestedDirectory(directories)?.path,
                reason: allowDownload || file.url == nil ? nil : "downloads are off")
        }
        guard let directory = firstWritable(directories) else {
            throw ResourceError.noWritableDirectory(fileName: file.fileName, searched: searched)
        }
        let destination = directory.appendingPathComponent(file.fileName)
        do {
            try download(url, to: destination, verifying: file, progress: progress ?? TerminalProgress.bar(for: file.fileName),
                         shouldStop: shouldStop)
        } catch let error as DownloadFailure {
            throw ResourceError.notFound(
                fileName: file.fileName, searched: searched, url: url,
                suggestedDirectory: directory.path, reason: "download failed: \(error.reason)")
        }
        return destination
    }

    /// The folder holding the CIFAR-10 binary batches (`test_batch.bin` and friends); see `locateCIFAR`.
    public static func locateCIFAR10(
        in directories: [URL], allowDownload: Bool, archive: RemoteFile = KnownFiles.cifar10Archive,
        progress: ((Int64, Int64?) -> Void)? = nil, shouldStop: @escaping () -> Bool = { false }
    ) throws -> URL {
        try locateCIFAR(CIFAR10Layout.self, in: directories, allowDownload: allowDownload, archive: archive, progress: progress,
                        shouldStop: shouldStop)
    }

    /// The folder holding a CIFAR layout's binary files (`cifar-10-batches-bin`,
    /// `cifar-100-binary`): found as `dir/FOLDER` or `dir` itself in the search directories, or,
    /// when allowed, downloaded as the official archive and unpacked into the first writable
    /// directory.
    public static func locateCIFAR<Layout: CIFARLayout>(
        _ layout: Layout.Type, in directories: [URL], allowDownload: Bool, archive: RemoteFile = Layout.archive,
        progress: ((Int64, Int64?) -> Void)? = nil, shouldStop: @escaping () -> Bool = { false }
    ) throws -> URL {
        let marker = Layout.testFiles[0]
        let folderName = Layout.folderName
        for directory in directories {
            for candidate in [directory.appendingPathComponent(folderName), directory]
            where FileManager.default.fileExists(atPath: candidate.appendingPathComponent(marker).path) {
                return candidate
            }
        }
        let searched = directories.map(\.path)
        guard allowDownload, archive.url != nil else {
            throw ResourceError.notFound(
                fileName: folderName + "/" + marker, searched: searched, url: archive.url,
                suggestedDirectory: suggestedDirectory(directories)?.path,
                reason: allowDownload ? nil : "downloads are off; unpack \(archive.fileName) into one of these")
        }
        let tarball = try locate(archive, in: directories, allowDownload: true, progress: progress, shouldStop: shouldStop)
        let directory = tarball.deletingLastPathComponent()
        try ArchiveExtractor.extractTarGz(tarball, folder: folderName, into: directory)
        let folder = directory.appendingPathComponent(folderName)
        guard FileManager.default.fileExists(atPath: folder.appendingPathComponent(marker).path) else {
            throw ResourceError.extractionFailed(archive: tarball.path, reason: "it holds no \(folderName)/\(marker)")
        }
        // The unpacked folder is what is used from now on; the archive is 170 MB of duplicates.
        try? FileManager.default.removeItem(at: tarball)
        return folder
    }

    /// Where a message tells the user to put a file: the first existing writable directory, else
    /// the last one (the user cache). Unlike `firstWritable`, it creates nothing.
    static func suggestedDirectory(_ directories: [URL]) -> URL? {
        directories.first { directory in
            var isDirectory: ObjCBool = false
            return FileManager.default.fileExists(atPath: directory.path, isDirectory: &isDirectory)
                && isDirectory.boolValue && FileManager.default.isWritableFile(atPath: directory.path)
        } ?? directories.last
    }

    /// The first directory that exists or can be created, and is writable.
    static func firstWritable(_ directories: [URL]) -> URL? {
        directories.first { directory in
            try? FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            return FileManager.default.isWritableFile(atPath: directory.path)
        }
    }

    /// Network-level failure (no route, timeout, refused); mapped to `notFound` with the advice.
    struct DownloadFailure: Error {
        var reason: String
    }

    /// Streams `url` to a temporary file beside `destination`, checks the digest, then renames.
    static func download(
        _ url: URL, to destination: URL, verifying file: RemoteFile, progress: ((Int64, Int64?) -> Void)?,
        shouldStop: () -> Bool
    ) throws {
        try? FileManager.default.createDirectory(
            at: destination.deletingLastPathComponent(), withIntermediateDirectories: true)
        AtomicFile.removeAbandonedTemporaries(beside: destination)
        let temporary = AtomicFile.temporaryURL(beside: destination)
        guard FileManager.default.createFile(atPath: temporary.path, contents: nil),
              let handle = try? FileHandle(forWritingTo: temporary) else {
            throw ResourceError.noWritableDirectory(fileName: file.fileName, searched: [destination.deletingLastPathComponent().path])
        }
        var keepTemporary = false
        defer { if !keepTemporary { try? FileManager.default.removeItem(at: temporary) } }

        let expected = file.expectedDigest
        let receiver = DownloadReceiver(handle: handle, algorithm: expected?.algorithm)
        let configuration = URLSessionConfiguration.ephemeral
        configuration.timeoutIntervalForRequest = idleTimeout
        configuration.timeoutIntervalForResource = totalTimeout
        let session = URLSession(configuration: configuration, delegate: receiver, delegateQueue: nil)
        defer { session.invalidateAndCancel() }
        // A stop requested before the download starts (or while the file was being looked for) counts.
        if shouldStop() { throw ResourceError.interrupted(fileName: file.fileName) }
        let task = session.dataTask(with: url)
        task.resume()

        var interrupted = false
        var lastReport: (Int64, Int64?) = (-1, nil)
        // Poll rather than block, so progress is reported on this thread and Ctrl-C can cancel.
        while receiver.completion.wait(timeout: .now() + 0.1) == .timedOut {
            let now = receiver.snapshot()
            if let progress, now.received != lastReport.0 {
                progress(now.received, now.expected)
                lastReport = (now.received, now.expected)
            }
            if !interrupted, shouldStop() {
                interrupted = true
                task.cancel()
            }
        }
        try? handle.close()
        let outcome = receiver.snapshot()
        if let progress, outcome.received != lastReport.0 { progress(outcome.received, outcome.expected) }
        if interrupted { throw ResourceError.interrupted(fileName: file.fileName) }
        if let status = outcome.status, !(200..<300).contains(status) {
            throw ResourceError.httpStatus(fileName: file.fileName, url: url, status: status)
        }
        if let failure = outcome.failure { throw DownloadFailure(reason: failure) }
        if let expected, let actual = receiver.digest(), actual != expected.hex {
            throw ResourceError.checksumMismatch(
                fileName: file.fileName, url: url, algorithm: expected.algorithm.rawValue, expected: expected.hex, actual: actual)
        }
        do {
            try AtomicFile.commit(temporary, to: destination)
            keepTemporary = true
        } catch {
            throw ResourceError.noWritableDirectory(fileName: file.fileName, searched: ["\(destination.path) (\(error))"])
        }
    }
}

/// Receives a download on URLSession's delegate queue; the waiting thread reads its state
/// through `snapshot()`. All mutable state is guarded by `lock`.
private final class DownloadReceiver: NSObject, URLSessionDataDelegate, @unchecked Sendable {
    struct Snapshot {
        var received: Int64
        var expected: Int64?
        var status: Int?
        var failure: String?
    }

    let completion = DispatchSemaphore(value: 0)
    private let lock = NSLock()
    private let handle: FileHandle
    private let hasher: Checksum.Hasher?
    private var state = Snapshot(received: 0)

    init(handle: FileHandle, algorithm: Checksum.Algorithm?) {
        self.handle = handle
        self.hasher = algorithm.map { Checksum.Hasher($0) }
    }

    func snapshot() -> Snapshot {
        lock.lock()
        defer { lock.unlock() }
        return state
    }

    func digest() -> String? {
        lock.lock()
        defer { lock.unlock() }
        return hasher?.finish()
    }

    func urlSession(
        _ session: URLSession, dataTask: URLSessionDataTask, didReceive response: URLResponse,
        completionHandler: @escaping @Sendable (URLSession.ResponseDisposition) -> Void
    ) {
        lock.lock()
        if let http = response as? HTTPURLResponse, !(200..<300).contains(http.statusCode) {
            state.status = http.statusCode
            lock.unlock()
            completionHandler(.cancel)
            return
        }
        state.expected = response.expectedContentLength >= 0 ? response.expectedContentLength : nil
        lock.unlock()
        completionHandler(.allow)
    }

    func urlSession(_ session: URLSession, dataTask: URLSessionDataTask, didReceive data: Data) {
        lock.lock()
        defer { lock.unlock() }
        guard state.failure == nil else { return }
        do {
            try handle.write(contentsOf: data)
            hasher?.update(data)
            state.received += Int64(data.count)
        } catch {
            state.failure = "cannot write the download: \(error.localizedDescription)"
            dataTask.cancel()
        }
    }

    func urlSession(_ session: URLSession, task: URLSessionTask, didCompleteWithError error: Error?) {
        lock.lock()
        if let error, state.failure == nil, state.status == nil { state.failure = error.localizedDescription }
        lock.unlock()
        completion.signal()
    }
}
