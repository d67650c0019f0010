import Foundation

/// Calibration statistics kept on disk, so that processes calibrating the same model on the same
/// images (the shards of a sweep, or a recipe run again) collect them once.
///
/// A file is named by the model's fingerprint and a digest of what identifies the images; one
/// that cannot be read back is treated as absent and collected again.
public struct CalibrationStore: Sendable {
    public var directory: URL

    public init(directory: URL) {
        self.directory = directory
    }

    func file(for key: CalibrationKey, dataIdentity: String) -> URL {
        let data = Checksum.sha256(Data((key.data + "\n" + dataIdentity).utf8)).prefix(16)
        return directory.appendingPathComponent(String(format: "%016llx", key.model) + "-\(data).plist")
    }

    public func load(_ key: CalibrationKey, dataIdentity: String) -> CalibrationStatistics? {
        guard let contents = FileManager.default.contents(atPath: file(for: key, dataIdentity: dataIdentity).path) else { return nil }
        return try? PropertyListDecoder().decode(CalibrationStatistics.self, from: contents)
    }

    /// Writes the whole file or nothing: shards finishing at once may race to store the same
    /// statistics, and a reader must never see half of them.
    public func save(_ statistics: CalibrationStatistics, for key: CalibrationKey, dataIdentity: String) throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let encoder = PropertyListEncoder()
        encoder.outputFormat = .binary
        try encoder.encode(statistics).write(to: file(for: key, dataIdentity: dataIdentity), options: .atomic)
    }
}
