/// A cursor over a byte buffer whose every read is bounds-checked, so damaged files end in a
/// `CheckpointError` instead of a crash.
struct ByteReader {
    let bytes: [UInt8]
    let fileName: String
    private(set) var position: Int
    /// Where the region this reader may consume ends (exclusive).
    let end: Int

    init(bytes: [UInt8], fileName: String, start: Int = 0, end: Int? = nil) {
        self.bytes = bytes
        self.fileName = fileName
        self.position = max(0, min(start, bytes.count))
        self.end = max(self.position, min(end ?? bytes.count, bytes.count))
    }

    var remaining: Int { end - position }
    var isAtEnd: Bool { position >= end }

    func truncated(_ what: String, needing count: Int) -> CheckpointError {
        CheckpointError(
            .truncated, file: fileName,
            problem: "truncated: \(what) needs \(count) bytes at offset \(position), file has \(remaining) left",
            remedy: CheckpointError.redownloadAdvice)
    }

    mutating func skip(_ count: Int, what: String) throws {
        guard count >= 0, count <= remaining else { throw truncated(what, needing: count) }
        position += count
    }

    mutating func byte(_ what: String) throws -> UInt8 {
        guard position < end else { throw truncated(what, needing: 1) }
        defer { position += 1 }
        return bytes[position]
    }

    /// The range of the next `count` bytes, consumed without copying.
    mutating func range(_ count: Int, what: String) throws -> Range<Int> {
        guard count >= 0, count <= remaining else { throw truncated(what, needing: count) }
        defer { position += count }
        return position..<(position + count)
    }

    mutating func take(_ count: Int, what: String) throws -> ArraySlice<UInt8> {
        bytes[try range(count, what: what)]
    }

    /// An unsigned little-endian integer of `width` bytes (at most 8).
    mutating func unsignedLittleEndian(_ width: Int, what: String) throws -> UInt64 {
        let span = try range(width, what: what)
        var value: UInt64 = 0
        for (shift, index) in span.enumerated() { value |= UInt64(bytes[index]) << (8 * UInt64(shift)) }
        return value
    }

    mutating func int64LittleEndian(_ what: String) throws -> Int64 {
        Int64(bitPattern: try unsignedLittleEndian(8, what: what))
    }

    /// Bytes up to (not including) the next newline, which is consumed.
    mutating func line(_ what: String, maximumLength: Int = 256) throws -> ArraySlice<UInt8> {
        let limit = min(end, position + maximumLength + 1)
        guard let newline = bytes[position..<limit].firstIndex(of: 0x0A) else {
            throw CheckpointError(
                .corrupt, file: fileName,
                problem: "\(what) at offset \(position) has no newline within \(maximumLength) bytes",
                remedy: CheckpointError.redownloadAdvice)
        }
        defer { position = newline + 1 }
        return bytes[position..<newline]
    }
}
