import Foundation

/// A fenced code block of a Markdown document.
public struct FencedBlock: Sendable, Equatable {
    /// The first word of the info string: `qsh` in ```` ```qsh no-run ````.
    public var language: String
    /// The remaining words of the info string, e.g. `["no-run"]`.
    public var attributes: [String]
    /// 1-based line of the opening fence.
    public var fenceLine: Int
    /// 1-based line of the block's first content line.
    public var firstContentLine: Int
    /// 1-based line of the closing fence, or the last line when the fence is never closed.
    public var closingLine: Int
    /// The content, one entry per line, without line breaks.
    public var lines: [String]
    /// Whether only blank lines stand between the previous block's closing fence and this one.
    public var followsPreviousBlock: Bool

    public var text: String { lines.joined(separator: "\n") }
}

/// Finds fenced code blocks the way CommonMark does: a run of at least three backticks or
/// tildes, indented at most three spaces, closed by a run of the same character at least as long.
public enum MarkdownBlocks {
    public static func extract(from document: String) -> [FencedBlock] {
        let lines = splitLines(document)
        var blocks: [FencedBlock] = []
        var index = 0
        var previousClosing: Int?
        while index < lines.count {
            guard let opening = Fence(lines[index]), opening.isValidOpening else {
                index += 1
                continue
            }
            let words = opening.info.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "," }).map(String.init)
            var content: [String] = []
            var cursor = index + 1
            var closed = false
            while cursor < lines.count {
                if let closing = Fence(lines[cursor]), closing.character == opening.character,
                   closing.length >= opening.length, closing.info.isEmpty {
                    closed = true
                    break
                }
                content.append(removeIndent(lines[cursor], upTo: opening.indent))
                cursor += 1
            }
            let follows = previousClosing.map { closing in
                lines[(closing + 1)..<index].allSatisfy { $0.allSatisfy { $0 == " " || $0 == "\t" } }
            } ?? false
            blocks.append(FencedBlock(language: words.first ?? "", attributes: Array(words.dropFirst()),
                                      fenceLine: index + 1, firstContentLine: index + 2,
                                      closingLine: closed ? cursor + 1 : lines.count, lines: content,
                                      followsPreviousBlock: follows))
            previousClosing = cursor
            index = cursor + 1
        }
        return blocks
    }

    /// Lines without their breaks; `\r\n` and a lone `\r` count as breaks, as in recipes.
    static func splitLines(_ text: String) -> [String] {
        var lines: [String] = []
        var current = ""
        var previousWasCarriageReturn = false
        for character in text.unicodeScalars {
            if character == "\n" && previousWasCarriageReturn {
                previousWasCarriageReturn = false
                continue
            }
            previousWasCarriageReturn = character == "\r"
            if character == "\n" || character == "\r" {
                lines.append(current)
                current = ""
            } else {
                current.unicodeScalars.append(character)
            }
        }
        if !current.isEmpty { lines.append(current) }
        return lines
    }

    private static func removeIndent(_ line: String, upTo indent: Int) -> String {
        var removed = 0
        var rest = Substring(line)
        while removed < indent, rest.first == " " {
            rest = rest.dropFirst()
            removed += 1
        }
        return String(rest)
    }

    private struct Fence {
        var indent: Int
        var character: Character
        var length: Int
        var info: String

        init?(_ line: String) {
            let leading = line.prefix { $0 == " " }
            guard leading.count <= 3 else { return nil }
            let rest = line.dropFirst(leading.count)
            guard let first = rest.first, first == "`" || first == "~" else { return nil }
            let run = rest.prefix { $0 == first }
            guard run.count >= 3 else { return nil }
            indent = leading.count
            character = first
            length = run.count
            info = String(rest.dropFirst(run.count)).trimmingCharacters(in: .whitespaces)
        }

        /// A backtick fence's info string may not contain backticks (that is inline code).
        var isValidOpening: Bool { character == "~" || !info.contains("`") }
    }
}
