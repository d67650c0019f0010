import Foundation
import XCTest

/// Drives the built `qsh` executable as a user would.
enum QshProcess {
    /// The qsh binary beside the test bundle (SwiftPM builds it for this test target).
    static var executable: URL {
        let bundle = Bundle(for: Marker.self).bundleURL
        let candidates = [bundle.appendingPathComponent("qsh"), bundle.deletingLastPathComponent().appendingPathComponent("qsh")]
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0.path) } ?? candidates[0]
    }

    static var packageRoot: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }

    static var sharedDirectory: URL { packageRoot.deletingLastPathComponent().appendingPathComponent("shared") }

    /// Environment pointing qsh at the shared models and data, and away from the user's history.
    static var environment: [String: String] {
        var environment = ProcessInfo.processInfo.environment
        environment["QSH_MODELS"] = environment["QSH_MODELS"] ?? sharedDirectory.appendingPathComponent("models").path
        environment["QSH_DATA"] = environment["QSH_DATA"] ?? sharedDirectory.appendingPathComponent("data").path
        environment["QSH_HISTFILE"] = FileManager.default.temporaryDirectory.appendingPathComponent("qsh-test-history").path
        return environment
    }

    struct Result {
        var status: Int32
        var output: String
        var errors: String
    }

    static func run(_ arguments: [String], input: String? = nil, directory: URL? = nil) throws -> Result {
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        process.environment = environment
        process.currentDirectoryURL = directory ?? packageRoot
        let output = Pipe(), errors = Pipe(), stdin = Pipe()
        process.standardOutput = output
        process.standardError = errors
        process.standardInput = stdin
        try process.run()
        if let input { stdin.fileHandleForWriting.write(Data(input.utf8)) }
        try stdin.fileHandleForWriting.close()
        // Read before waiting so a large output cannot fill the pipe and stall the child.
        let outputData = output.fileHandleForReading.readDataToEndOfFile()
        let errorData = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Result(status: process.terminationStatus, output: String(decoding: outputData, as: UTF8.self),
                      errors: String(decoding: errorData, as: UTF8.self))
    }

    private final class Marker {}
}
