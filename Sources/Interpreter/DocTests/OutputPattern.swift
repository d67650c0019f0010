import Foundation

/// Expected output as written in documentation, with room for what changes from run to run.
///
/// - `[..]` inside a line matches any text on that line (possibly none): timings, paths, speeds.
/// - A line that is exactly `...` matches any number of lines (possibly none).
/// - Trailing spaces and trailing blank lines are ignored on both sides.
public struct OutputPattern: Sendable {
    public static let inlineWildcard = "[..]"
    public static let lineWildcard = "..."

    public let lines: [String]

    public init(_ text: String) {
        lines = Self.normalizedLines(text)
    }

    public func matches(_ actual: String) -> Bool {
        matches(lines: Self.normalizedLines(actual))
    }

    func matches(lines actual: [String]) -> Bool {
        // failed[p][a]: pattern from line p cannot match actual from line a; keeps `...` linear.
        var failed = Set<Int>()
        let width = actual.count + 1
        func match(_ p: Int, _ a: Int) -> Bool {
            if failed.contains(p * width + a) { return false }
            let result: Bool
            if p == lines.count {
                result = a == actual.count
            } else if lines[p] == Self.lineWildcard {
                result = (a...actual.count).contains { match(p + 1, $0) }
            } else {
                result = a < actual.count && Self.lineMatches(pattern: lines[p], actual[a]) && match(p + 1, a + 1)
            }
            if !result { failed.insert(p * width + a) }
            return result
        }
        return match(0, 0)
    }

    /// One line against one pattern line with `[..]` wildcards.
    public static func lineMatches(pattern: String, _ line: String) -> Bool {
        guard pattern.contains(inlineWildcard) else { return pattern == line }
        let pieces = pattern.components(separatedBy: inlineWildcard)
        var rest = Substring(line)
        guard let first = pieces.first, rest.hasPrefix(first) else { return false }
        rest = rest.dropFirst(first.count)
        for piece in pieces.dropFirst().dropLast() where !piece.isEmpty {
            guard let found = rest.range(of: piece) else { return false }
            rest = rest[found.upperBound...]
        }
        let last = pieces.last ?? ""
        return rest.hasSuffix(last)
    }

    public static func normalizedLines(_ text: String) -> [String] {
        var lines = MarkdownBlocks.splitLines(text).map { line -> String in
            var trimmed = Substring(line)
            while let last = trimmed.last, last == " " || last == "\t" { trimmed = trimmed.dropLast() }
            return String(trimmed)
        }
        while lines.last?.isEmpty == true { lines.removeLast() }
        return lines
    }
}
