import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A one-line download bar on stderr, drawn only when stderr is a terminal so logs stay clean.
enum TerminalProgress {
    static func bar(for fileName: String) -> ((Int64, Int64?) -> Void)? {
        guard isatty(STDERR_FILENO) == 1 else { return nil }
        var lastLine = ""
        return { received, total in
            let megabytes = { (bytes: Int64) in String(format: "%.1f", Double(bytes) / 1_048_576) }
            var line = "downloading \(fileName): \(megabytes(received)) MB"
            if let total, total > 0 {
                let fraction = min(1, Double(received) / Double(total))
                let width = 30
                let filled = Int(fraction * Double(width))
                line = "downloading \(fileName) [" + String(repeating: "#", count: filled)
                    + String(repeating: " ", count: width - filled)
                    + "] \(Int(fraction * 100))% of \(megabytes(total)) MB"
            }
            guard line != lastLine else { return }
            lastLine = line
            let finished = total.map { received >= $0 } ?? false
            FileHandle.standardError.write(Data(("\r" + line + (finished ? "\n" : "")).utf8))
        }
    }
}
