import Foundation
import XCTest
@testable import QuantOps

/// `python3 -m http.server`'s handler on an ephemeral port of 127.0.0.1, serving `root`.
/// Stopped in `stop()`; the tests never reach the real network.
final class LocalHTTPServer {
    let process = Process()
    let port: Int
    let root: URL

    init(serving root: URL) throws {
        self.root = root
        guard let python = ["/usr/bin/python3", "/usr/local/bin/python3"].first(where: FileManager.default.isExecutableFile)
            ?? ProcessInfo.processInfo.environment["PATH"]?.split(separator: ":")
                .map({ "\($0)/python3" }).first(where: FileManager.default.isExecutableFile) else {
            throw XCTSkip("python3 is needed for the local test server")
        }
        let script = """
        import functools, http.server, sys
        class Quiet(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args): pass
        handler = functools.partial(Quiet, directory=sys.argv[1])
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        print(server.server_address[1], flush=True)
        server.serve_forever()
        """
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = ["-c", script, root.path]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        var line = Data()
        while !line.contains(UInt8(ascii: "\n")) {
            let chunk = output.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            line.append(chunk)
        }
        guard let port = Int(String(decoding: line, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)) else {
            process.terminate()
            throw XCTSkip("the local test server did not start")
        }
        self.port = port
    }

    func url(_ path: String) -> URL { URL(string: "http://127.0.0.1:\(port)/\(path)")! }

    func stop() {
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
    }

    deinit { stop() }
}

final class ResourceTests: XCTestCase {
    private var scratch: URL!

    override func setUpWithError() throws {
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("qsh-resource-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: scratch)
    }

    private func folder(_ name: String) throws -> URL {
        let url = scratch.appendingPathComponent(name)
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    private func contents(_ directory: URL) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []).sorted()
    }

    private func servedFile(_ name: String, byteCount: Int) throws -> (root: URL, payload: Data) {
        let root = try folder("served")
        var generator = SystemRandomNumberGenerator()
        let payload = Data((0..<byteCount).map { _ in UInt8.random(in: 0...255, using: &generator) })
        try payload.write(to: root.appendingPathComponent(name))
        return (root, payload)
    }

    // MARK: Checksums and known files

    func testDigestsMatchPublishedTestVectors() {
        XCTAssertEqual(Checksum.sha256(Data("abc".utf8)), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        XCTAssertEqual(Checksum.sha256(Data()), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        XCTAssertEqual(Checksum.digest(.md5, of: Data("abc".utf8)), "900150983cd24fb0d6963f7d28e17f72")
    }

    func testKnownFilesMatchTheSharedCopies() throws {
        let directory = CheckpointTestFiles.modelsDirectory
        var checked = 0
        for file in KnownFiles.models {
            let url = directory.appendingPathComponent(file.fileName)
            guard FileManager.default.fileExists(atPath: url.path) else { continue }
            XCTAssertEqual(try Checksum.sha256(of: url), file.sha256, file.fileName)
            let size = try FileManager.default.attributesOfItem(atPath: url.path)[.size] as? Int
            XCTAssertEqual(size.map(Int64.init), file.byteCount, file.fileName)
            checked += 1
        }
        if checked == 0 { throw XCTSkip("shared models not found in \(directory.path)") }
        // akamaster names its files by the first eight hex digits of their SHA-256.
        for file in [KnownFiles.resnet20, KnownFiles.resnet32, KnownFiles.resnet44, KnownFiles.resnet56] {
            let stem = file.fileName.split(separator: "-").last?.split(separator: ".").first.map(String.init)
            XCTAssertEqual(stem, file.sha256.map { String($0.prefix(8)) })
            XCTAssertEqual(file.url?.lastPathComponent, file.fileName)
        }
        XCTAssertNil(KnownFiles.neuronMergingResNet56.url)
    }

    // MARK: Search directories

    func testSearchOrderIsOverrideThenEnvironmentThenCache() {
        let directories = ResourceDirectories(
            kind: .models, override: "/explicit",
            environment: ["QSH_MODELS": "/first:/second", "XDG_CACHE_HOME": "/xdg"], homeDirectory: "/home/user")
        XCTAssertEqual(directories.searchPath.map(\.path), ["/explicit", "/first", "/second", "/xdg/qsh/models"])
        let data = ResourceDirectories(kind: .data, environment: ["QSH_MODELS": "/ignored"], homeDirectory: "/home/user")
        XCTAssertEqual(data.searchPath.map(\.path), ["/home/user/.cache/qsh/data"])
        let tilde = ResourceDirectories(kind: .data, override: "~/cifar", environment: ["QSH_DATA": "/home/user/cifar"], homeDirectory: "/home/user")
        XCTAssertEqual(tilde.searchPath.map(\.path), ["/home/user/cifar", "/home/user/.cache/qsh/data"], "duplicates are dropped")
    }

    func testLocatePrefersTheFirstDirectoryHoldingTheFile() throws {
        let first = try folder("first"), second = try folder("second")
        try Data("b".utf8).write(to: second.appendingPathComponent("m.th"))
        XCTAssertEqual(try Fetcher.locate(RemoteFile(fileName: "m.th"), in: [first, second], allowDownload: false), second.appendingPathComponent("m.th"))
        try Data("a".utf8).write(to: first.appendingPathComponent("m.th"))
        XCTAssertEqual(try Fetcher.locate(RemoteFile(fileName: "m.th"), in: [first, second], allowDownload: false), first.appendingPathComponent("m.th"))
    }

    // MARK: Downloads from a local server

    func testDownloadVerifiesTheChecksumAndMovesTheFileIntoPlace() throws {
        let (root, payload) = try servedFile("model.th", byteCount: 300_000)
        let server = try LocalHTTPServer(serving: root)
        defer { server.stop() }
        let unwritable = URL(fileURLWithPath: "/proc/qsh-not-writable")
        let cache = scratch.appendingPathComponent("cache/qsh/models")
        let file = RemoteFile(fileName: "model.th", url: server.url("model.th"), sha256: Checksum.sha256(payload))
        nonisolated(unsafe) var reports: [(Int64, Int64?)] = []
        let located = try Fetcher.locate(file, in: [unwritable, cache], allowDownload: true) { reports.append(($0, $1)) }
        XCTAssertEqual(located, cache.appendingPathComponent("model.th"))
        XCTAssertEqual(try Data(contentsOf: located), payload)
        XCTAssertEqual(contents(cache), ["model.th"], "no temporary file is left")
        XCTAssertEqual(reports.last?.0, Int64(payload.count))
        XCTAssertEqual(reports.last?.1, Int64(payload.count))
        XCTAssertEqual(reports.map(\.0), reports.map(\.0).sorted(), "progress only grows")

        server.stop()
        XCTAssertEqual(try Fetcher.locate(file, in: [unwritable, cache], allowDownload: true), located, "found again without the server")
    }

    /// The caller decides when a download stops (the shell passes its Ctrl-C flag): nothing is kept.
    func testDownloadStopsWhenTheCallerSaysSo() throws {
        let (root, _) = try servedFile("model.th", byteCount: 10_000)
        let server = try LocalHTTPServer(serving: root)
        defer { server.stop() }
        let cache = try folder("cache")
        let file = RemoteFile(fileName: "model.th", url: server.url("model.th"))
        nonisolated(unsafe) var asked = 0
        XCTAssertThrowsError(try Fetcher.locate(file, in: [cache], allowDownload: true, progress: { _, _ in },
                                                shouldStop: { asked += 1; return true })) { error in
            guard case .interrupted(let name)? = error as? ResourceError else { return XCTFail("expected an interruption, got \(error)") }
            XCTAssertEqual(name, "model.th")
        }
        XCTAssertGreaterThan(asked, 0)
        XCTAssertEqual(contents(cache), [], "an interrupted download keeps nothing")
        XCTAssertEqual(try Fetcher.locate(file, in: [cache], allowDownload: true, shouldStop: { false }), cache.appendingPathComponent("model.th"))
    }

    func testChecksumMismatchDeletesTheDownload() throws {
        let (root, _) = try servedFile("model.th", byteCount: 10_000)
        let server = try LocalHTTPServer(serving: root)
        defer { server.stop() }
        let cache = try folder("cache")
        let wrong = String(repeating: "0", count: 64)
        let file = RemoteFile(fileName: "model.th", url: server.url("model.th"), sha256: wrong)
        XCTAssertThrowsError(try Fetcher.locate(file, in: [cache], allowDownload: true)) { error in
            guard case .checksumMismatch(_, _, let algorithm, let expected, _)? = error as? ResourceError else {
                return XCTFail("expected a checksum mismatch, got \(error)")
            }
            XCTAssertEqual(algorithm, "SHA-256")
            XCTAssertEqual(expected, wrong)
            XCTAssertTrue("\(error)".contains("deleted"), "\(error)")
        }
        XCTAssertEqual(contents(cache), [])
    }

    func testMissingRemoteFileReportsTheHTTPStatus() throws {
        let (root, _) = try servedFile("present.th", byteCount: 10)
        let server = try LocalHTTPServer(serving: root)
        defer { server.stop() }
        let cache = try folder("cache")
        let file = RemoteFile(fileName: "absent.th", url: server.url("absent.th"))
        XCTAssertThrowsError(try Fetcher.locate(file, in: [cache], allowDownload: true)) { error in
            guard case .httpStatus(_, _, let status)? = error as? ResourceError else { return XCTFail("\(error)") }
            XCTAssertEqual(status, 404)
            XCTAssertTrue("\(error)".contains("HTTP 404"), "\(error)")
        }
        XCTAssertEqual(contents(cache), [])
    }

    func testWithoutNetworkTheErrorListsEveryDirectoryAndTheURL() throws {
        let first = try folder("override"), second = try folder("environment"), cache = try folder("cache")
        // Port 1 on the loopback refuses connections: a network that is not there.
        let url = try XCTUnwrap(URL(string: "http://127.0.0.1:1/resnet20-12fca82f.th"))
        let file = RemoteFile(fileName: "resnet20-12fca82f.th", url: url, sha256: KnownFiles.resnet20.sha256)
        for allowDownload in [false, true] {
            XCTAssertThrowsError(try Fetcher.locate(file, in: [first, second, cache], allowDownload: allowDownload)) { error in
                let message = "\(error)"
                guard case .notFound? = error as? ResourceError else { return XCTFail(message) }
                for directory in [first, second, cache] { XCTAssertTrue(message.contains(directory.path), message) }
                XCTAssertTrue(message.contains(url.absoluteString), message)
                XCTAssertTrue(message.contains("put it at \(first.path)/resnet20-12fca82f.th"), message)
                XCTAssertTrue(message.contains(allowDownload ? "download failed" : "downloads are off"), message)
            }
        }
        for directory in [first, second, cache] { XCTAssertEqual(contents(directory), []) }
        // Looking, without downloading, creates no directories.
        let absentCache = scratch.appendingPathComponent("never/created")
        XCTAssertThrowsError(try Fetcher.locate(file, in: [absentCache], allowDownload: false)) { error in
            XCTAssertTrue("\(error)".contains("put it at \(absentCache.path)/resnet20-12fca82f.th"), "\(error)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: scratch.appendingPathComponent("never").path))
        XCTAssertThrowsError(try Fetcher.locate(KnownFiles.neuronMergingResNet56, in: [cache], allowDownload: true)) { error in
            XCTAssertTrue("\(error)".contains("No public download is known"), "\(error)")
        }
    }

    func testCIFARArchiveIsDownloadedVerifiedAndUnpacked() throws {
        // A miniature archive with the official layout: one record and the class names.
        let staging = try folder("staging")
        let batches = staging.appendingPathComponent(KnownFiles.cifar10Folder)
        try FileManager.default.createDirectory(at: batches, withIntermediateDirectories: true)
        let record = Data([3] + (0..<3072).map { UInt8($0 % 251) })
        try record.write(to: batches.appendingPathComponent("test_batch.bin"))
        try Data("airplane\nautomobile\n".utf8).write(to: batches.appendingPathComponent("batches.meta.txt"))
        let served = try folder("served")
        let tarball = served.appendingPathComponent("cifar-10-binary.tar.gz")
        let tar = Process()
        tar.executableURL = URL(fileURLWithPath: "/usr/bin/tar")
        tar.arguments = ["-czf", tarball.path, "-C", staging.path, KnownFiles.cifar10Folder]
        try tar.run()
        tar.waitUntilExit()
        XCTAssertEqual(tar.terminationStatus, 0)

        let server = try LocalHTTPServer(serving: served)
        defer { server.stop() }
        let data = try folder("data")
        let archive = RemoteFile(fileName: "cifar-10-binary.tar.gz", url: server.url("cifar-10-binary.tar.gz"), md5: try Checksum.md5(of: tarball))
        let located = try Fetcher.locateCIFAR10(in: [data], allowDownload: true, archive: archive)
        XCTAssertEqual(located, data.appendingPathComponent(KnownFiles.cifar10Folder))
        XCTAssertEqual(try Data(contentsOf: located.appendingPathComponent("test_batch.bin")), record)
        XCTAssertEqual(contents(data), [KnownFiles.cifar10Folder], "the archive and staging folder are gone")

        server.stop()
        XCTAssertEqual(try Fetcher.locateCIFAR10(in: [data], allowDownload: false), located)
        var damaged = archive
        damaged.md5 = String(repeating: "f", count: 32)
        XCTAssertThrowsError(try Fetcher.locateCIFAR10(in: [try folder("empty")], allowDownload: false, archive: damaged)) { error in
            XCTAssertTrue("\(error)".contains("test_batch.bin not found"), "\(error)")
        }
    }
}
