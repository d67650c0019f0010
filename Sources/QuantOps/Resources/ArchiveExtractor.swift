import Foundation

/// Unpacks `.tar.gz` archives with the system `tar`, into a staging folder first so a failed or
/// interrupted extraction never leaves a partial data folder under the real name.
enum ArchiveExtractor {
    static let tarCandidates = ["/usr/bin/tar", "/bin/tar", "/usr/local/bin/tar", "/opt/homebrew/bin/tar"]

    /// Extracts `archive` and moves its top-level `folder` into `directory`, replacing nothing
    /// that already exists there.
    static func extractTarGz(_ archive: URL, folder: String, into directory: URL) throws {
        guard let tar = tarCandidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            throw ResourceError.extractionFailed(archive: archive.path, reason: "no tar program found (looked for \(tarCandidates.joined(separator: ", ")))")
        }
        let staging = directory.appendingPathComponent(".qsh-unpack-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: staging) }
        do {
            try FileManager.default.createDirectory(at: staging, withIntermediateDirectories: true)
        } catch {
            throw ResourceError.extractionFailed(archive: archive.path, reason: "cannot create \(staging.path): \(error.localizedDescription)")
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: tar)
        process.arguments = ["-xzf", archive.path, "-C", staging.path, "--no-same-owner", folder]
        let errors = Pipe()
        process.standardError = errors
        process.standardOutput = FileHandle.nullDevice
        do {
            try process.run()
        } catch {
            throw ResourceError.extractionFailed(archive: archive.path, reason: "cannot run \(tar): \(error.localizedDescription)")
        }
        let message = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw ResourceError.extractionFailed(
                archive: archive.path,
                reason: "tar exited with status \(process.terminationStatus): \(message.trimmingCharacters(in: .whitespacesAndNewlines))")
        }
        let unpacked = staging.appendingPathComponent(folder)
        let target = directory.appendingPathComponent(folder)
        do {
            if FileManager.default.fileExists(atPath: target.path) {
                // An earlier, partial copy: keep its files, add the missing ones.
                for name in try FileManager.default.contentsOfDirectory(atPath: unpacked.path)
                where !FileManager.default.fileExists(atPath: target.appendingPathComponent(name).path) {
                    try FileManager.default.moveItem(at: unpacked.appendingPathComponent(name), to: target.appendingPathComponent(name))
                }
            } else {
                try FileManager.default.moveItem(at: unpacked, to: target)
            }
        } catch {
            throw ResourceError.extractionFailed(archive: archive.path, reason: "cannot move the unpacked files into \(directory.path): \(error.localizedDescription)")
        }
    }
}
