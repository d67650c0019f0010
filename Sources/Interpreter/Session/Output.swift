#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Where a session writes what it has to say.
public protocol OutputSink: AnyObject {
    func write(_ text: String)
    /// Progress bars are drawn only on a terminal.
    var isTerminal: Bool { get }
}

extension OutputSink {
    public func line(_ text: String = "") { write(text + "\n") }
}

/// Standard output or standard error of the process.
public final class StandardStream: OutputSink {
    private let descriptor: Int32
    public let isTerminal: Bool

    public static func output() -> StandardStream { StandardStream(descriptor: STDOUT_FILENO) }
    public static func error() -> StandardStream { StandardStream(descriptor: STDERR_FILENO) }

    private init(descriptor: Int32) {
        self.descriptor = descriptor
        self.isTerminal = isatty(descriptor) != 0
    }

    /// Unbuffered, so that output and errors interleave in the order they happened.
    public func write(_ text: String) {
        var bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeMutableBytes { buffer in
                Glibc.write(descriptor, buffer.baseAddress! + offset, buffer.count - offset)
            }
            if written <= 0 {
                if written < 0 && errno == EINTR { continue }
                return
            }
            offset += written
        }
    }
}

/// Collects output in memory, for tests and documentation checks.
public final class CapturedOutput: OutputSink {
    public private(set) var text = ""
    public let isTerminal = false

    public init() {}

    public func write(_ text: String) { self.text += text }

    public func clear() { text = "" }
}
