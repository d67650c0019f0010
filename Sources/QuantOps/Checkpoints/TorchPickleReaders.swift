import Foundation

enum TorchZipReader {
    static func read(url: URL, fileName: String) throws -> Checkpoint {
        throw CheckpointError(.unsupported, file: fileName, problem: "torch zip checkpoints are not read yet")
    }
}

enum LegacyTorchReader {
    static func read(_ bytes: [UInt8], fileName: String) throws -> Checkpoint {
        throw CheckpointError(.unsupported, file: fileName, problem: "legacy torch checkpoints are not read yet")
    }
}
