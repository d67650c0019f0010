import Foundation

/// Reads PyTorch checkpoints without Python: legacy pickles (before torch 1.6), the zip format of
/// today's `torch.save`, and safetensors. Pickles are interpreted, never executed.
public enum CheckpointReader {
    /// Detects the format from the bytes, reads it, unwraps a dict holding `state_dict`, and
    /// strips a leading `module.` (left by `DataParallel`) from keys.
    public static func read(contentsOf url: URL) throws -> StateDict {
        try readCheckpoint(contentsOf: url).stateDict
    }

    /// As `read`, keeping the scalars stored next to the tensors and the detected format.
    public static func readCheckpoint(contentsOf url: URL) throws -> Checkpoint {
        try readCheckpoint(bytes: try CheckpointFile.bytes(of: url), fileName: url.lastPathComponent, zipFile: url)
    }

    /// As `readCheckpoint(contentsOf:)` for a file already in memory. `format` forces one reader
    /// instead of detecting the format from the leading bytes; `fileName` only names the file in
    /// errors. A zip is read through a temporary file (see `TorchZipReader.read`).
    public static func readCheckpoint(bytes: [UInt8], fileName: String, format: Checkpoint.Format? = nil) throws -> Checkpoint {
        try readCheckpoint(bytes: bytes, fileName: fileName, format: format, zipFile: nil)
    }

    private static func readCheckpoint(
        bytes: [UInt8], fileName: String, format: Checkpoint.Format? = nil, zipFile: URL?
    ) throws -> Checkpoint {
        var checkpoint: Checkpoint
        switch format ?? detectFormat(bytes) {
        case .safetensors?:
            checkpoint = try SafeTensorsReader.read(bytes, fileName: fileName)
        case .torchZip?:
            if let zipFile {
                checkpoint = try TorchZipReader.read(url: zipFile, fileName: fileName)
            } else {
                checkpoint = try CheckpointFile.withTemporaryCopy(of: bytes, fileName: fileName) { url in
                    try TorchZipReader.read(url: url, fileName: fileName)
                }
            }
        case .legacyPickle?:
            checkpoint = try LegacyTorchReader.read(bytes, fileName: fileName)
        case nil:
            let head = bytes.prefix(8).map { String(format: "%02x", $0) }.joined(separator: " ")
            throw CheckpointError(
                .unsupported, file: fileName,
                problem: "not a checkpoint format this reader knows (first bytes: \(head.isEmpty ? "none, the file is empty" : head))",
                remedy: "Expected a torch.save file (zip or legacy pickle) or a .safetensors file")
        }
        checkpoint.stateDict = try strippingDataParallelPrefix(checkpoint.stateDict, fileName: fileName)
        return checkpoint
    }

    public static func detectFormat(_ bytes: [UInt8]) -> Checkpoint.Format? {
        if bytes.starts(with: [0x50, 0x4B, 0x03, 0x04]) { return .torchZip }
        // Legacy files open with a protocol-2 pickle of the magic number (LONG1).
        if bytes.count >= 3, bytes[0] == 0x80, bytes[1] <= 5, bytes[2] == 0x8A { return .legacyPickle }
        if SafeTensorsReader.looksLikeSafeTensors(bytes) { return .safetensors }
        return nil
    }

    static let dataParallelPrefix = "module."

    /// `DataParallel` prefixes every key, once per wrapping; a prefix only some keys carry is a
    /// module that happens to be named `module` and stays. Stripping until some key lacks the
    /// prefix makes reading idempotent: a file written from the result reads back the same.
    static func strippingDataParallelPrefix(_ dict: StateDict, fileName: String) throws -> StateDict {
        var dict = dict
        while !dict.keys.isEmpty, dict.keys.allSatisfy({ $0.hasPrefix(dataParallelPrefix) }) {
            var stripped = StateDict()
            for key in dict.keys { stripped[String(key.dropFirst(dataParallelPrefix.count))] = dict[key] }
            dict = stripped
        }
        return dict
    }
}
