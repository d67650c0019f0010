import Foundation

/// A checkpoint as read from disk: its tensors plus the scalars stored beside them.
public struct Checkpoint: Sendable {
    public enum Format: String, Sendable {
        case legacyPickle = "legacy torch pickle"
        case torchZip = "torch zip"
        case safetensors = "safetensors"
    }

    public var stateDict: StateDict
    /// Top-level scalars next to the state dict (`best_prec1`, `acc`, `epoch`), or a safetensors
    /// `__metadata__` table, as text.
    public var metadata: [String: String]
    public var format: Format

    public init(stateDict: StateDict, metadata: [String: String] = [:], format: Format) {
        self.stateDict = stateDict
        self.metadata = metadata
        self.format = format
    }
}

enum CheckpointFile {
    /// The whole file; checkpoints are small enough (a few MB) to hold, and holding them lets
    /// every later read be a bounds-checked index into one array.
    static func bytes(of url: URL) throws -> [UInt8] {
        do {
            return [UInt8](try Data(contentsOf: url, options: .mappedIfSafe))
        } catch {
            throw CheckpointError(
                .io, file: url.lastPathComponent,
                problem: "cannot read \(url.path): \(error.localizedDescription)",
                remedy: "Check that the file exists and is readable")
        }
    }

    /// Runs `body` on a temporary file holding `bytes`, removed afterwards.
    static func withTemporaryCopy<T>(of bytes: [UInt8], fileName: String, _ body: (URL) throws -> T) throws -> T {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("qsh-checkpoint-\(UUID().uuidString)")
        do {
            try Data(bytes).write(to: url)
        } catch {
            throw CheckpointError(.io, file: fileName, problem: "cannot write a temporary copy to \(url.path): \(error.localizedDescription)",
                                  remedy: "Check that the temporary directory (TMPDIR) is writable")
        }
        defer { try? FileManager.default.removeItem(at: url) }
        return try body(url)
    }

    /// Multiplies dimension sizes, failing on negative sizes or overflow.
    static func elementCount(_ shape: [Int]) -> Int? {
        var count = 1
        for size in shape {
            guard size >= 0 else { return nil }
            let (product, overflow) = count.multipliedReportingOverflow(by: size)
            guard !overflow else { return nil }
            count = product
        }
        return count
    }
}
