/// A unified diff of expected against actual lines, where "equal" is decided by the caller
/// (so that wildcard lines of the expected side count as equal).
public enum LineDiff {
    enum Edit: Equatable {
        case same(expected: Int, actual: Int)
        case removed(Int)
        case inserted(Int)
    }

    /// The diff in unified form: `--- expected`, `+++ actual`, then hunks with `context` lines around changes.
    public static func unified(expected: [String], actual: [String], expectedLabel: String = "expected",
                               actualLabel: String = "actual", context: Int = 3,
                               equal: (String, String) -> Bool = { $0 == $1 }) -> String {
        let edits = script(expected, actual, equal: equal)
        var output = ["--- \(expectedLabel)", "+++ \(actualLabel)"]
        let changed = edits.indices.filter { if case .same = edits[$0] { return false } else { return true } }
        guard !changed.isEmpty else { return output.joined(separator: "\n") }

        // Group changes whose context overlaps into one hunk.
        var hunks: [ClosedRange<Int>] = []
        for index in changed {
            let range = max(0, index - context)...min(edits.count - 1, index + context)
            if let last = hunks.last, range.lowerBound <= last.upperBound + 1 {
                hunks[hunks.count - 1] = last.lowerBound...range.upperBound
            } else {
                hunks.append(range)
            }
        }
        for hunk in hunks {
            let slice = edits[hunk]
            let expectedCount = slice.filter { if case .inserted = $0 { return false } else { return true } }.count
            let actualCount = slice.filter { if case .removed = $0 { return false } else { return true } }.count
            let expectedStart = startLine(of: hunk.lowerBound, in: edits, expectedSide: true)
            let actualStart = startLine(of: hunk.lowerBound, in: edits, expectedSide: false)
            output.append("@@ -\(expectedStart),\(expectedCount) +\(actualStart),\(actualCount) @@")
            for edit in slice {
                switch edit {
                case .same(let e, _): output.append(" " + expected[e])
                case .removed(let e): output.append("-" + expected[e])
                case .inserted(let a): output.append("+" + actual[a])
                }
            }
        }
        return output.joined(separator: "\n")
    }

    /// 1-based line number where a hunk starting at `index` begins on one side.
    private static func startLine(of index: Int, in edits: [Edit], expectedSide: Bool) -> Int {
        var line = 1
        for edit in edits[..<index] {
            switch edit {
            case .same: line += 1
            case .removed: if expectedSide { line += 1 }
            case .inserted: if !expectedSide { line += 1 }
            }
        }
        return line
    }

    /// The shortest edit script by longest common subsequence; outputs are small, so O(n·m) is fine.
    static func script(_ expected: [String], _ actual: [String], equal: (String, String) -> Bool) -> [Edit] {
        let n = expected.count, m = actual.count
        var common = Array(repeating: Array(repeating: 0, count: m + 1), count: n + 1)
        for i in stride(from: n - 1, through: 0, by: -1) {
            for j in stride(from: m - 1, through: 0, by: -1) {
                common[i][j] = equal(expected[i], actual[j]) ? common[i + 1][j + 1] + 1 : max(common[i + 1][j], common[i][j + 1])
            }
        }
        var edits: [Edit] = []
        var i = 0, j = 0
        while i < n || j < m {
            if i < n, j < m, equal(expected[i], actual[j]) {
                edits.append(.same(expected: i, actual: j))
                i += 1
                j += 1
            } else if i < n, j == m || common[i + 1][j] >= common[i][j + 1] {
                edits.append(.removed(i))
                i += 1
            } else {
                edits.append(.inserted(j))
                j += 1
            }
        }
        return edits
    }
}
