import Foundation

/// Why a checkpoint could not be read or written, naming the file, the problem and what to do.
public struct CheckpointError: Error, CustomStringConvertible, Sendable {
    public enum Kind: Sendable, Equatable {
        /// The file ends before the data it announces.
        case truncated
        /// The bytes contradict the format (bad header, impossible shape, wrong sizes).
        case corrupt
        /// A valid file using a feature this reader does not implement.
        case unsupported
        /// The pickle asks for something that is not a tensor or a container; it is never run.
        case refused
        /// The file system refused a read or a write.
        case io
    }

    public var kind: Kind
    /// The file's name (last path component), so messages stay short but identify the file.
    public var file: String
    public var problem: String
    public var remedy: String?

    public init(_ kind: Kind, file: String, problem: String, remedy: String? = nil) {
        self.kind = kind
        self.file = file
        self.problem = problem
        self.remedy = remedy
    }

    public var description: String {
        var text = "\(file): \(problem)"
        if let remedy { text += ". \(remedy)" }
        return text
    }
}

extension CheckpointError {
    static let redownloadAdvice = "The file is damaged or incomplete; download it again or re-save it with torch.save"
}
