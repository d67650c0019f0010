import Foundation

/// One part of a job split N ways: `index` counts from 0, as array schedulers do
/// (`$SLURM_ARRAY_TASK_ID`, `$JOB_COMPLETION_INDEX`).
public struct Shard: Sendable, Equatable, Hashable, Codable, CustomStringConvertible {
    public var index: Int
    public var count: Int

    /// More parts than this is surely a typo, and would make every part empty.
    public static let maximumCount = 100_000

    public init(index: Int, count: Int) throws(ShardError) {
        guard count >= 1, count <= Self.maximumCount else { throw ShardError("the shard count must be 1 to \(Self.maximumCount), got \(count)") }
        guard index >= 0, index < count else {
            throw ShardError("shard \(index)/\(count): the index counts from 0 and must be below the count (0 to \(count - 1))")
        }
        self.index = index
        self.count = count
    }

    /// Reads `i/N`, e.g. `3/8`.
    public init(parsing text: String) throws(ShardError) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let index = Int(parts[0].trimmingCharacters(in: .whitespaces)),
              let count = Int(parts[1].trimmingCharacters(in: .whitespaces)) else {
            throw ShardError("'\(text)' is not a shard: write INDEX/COUNT with INDEX counting from 0, e.g. 0/4")
        }
        try self.init(index: index, count: count)
    }

    /// A shard read from a file is checked like one typed on the command line.
    public init(from decoder: any Decoder) throws {
        enum Keys: String, CodingKey { case index, count }
        let container = try decoder.container(keyedBy: Keys.self)
        let index = try container.decode(Int.self, forKey: .index)
        let count = try container.decode(Int.self, forKey: .count)
        do {
            try self.init(index: index, count: count)
        } catch {
            throw DecodingError.dataCorrupted(DecodingError.Context(codingPath: decoder.codingPath, debugDescription: error.description))
        }
    }

    public var description: String { "\(index)/\(count)" }

    /// Whether work item `item` (numbered from 0) belongs to this shard: items are dealt round
    /// robin, so shards get equal numbers of items whatever the sweep's length.
    public func owns(item: Int) -> Bool { item % count == index }

    /// This shard's contiguous part of `items`; the parts of all shards tile the whole in order.
    public func part<C: RandomAccessCollection>(of items: C) -> C.SubSequence where C.Index == Int {
        let total = items.count
        let lower = items.startIndex + index * total / count
        let upper = items.startIndex + (index + 1) * total / count
        return items[lower..<upper]
    }
}

public struct ShardError: Error, CustomStringConvertible, Equatable {
    public var description: String
    public init(_ description: String) { self.description = description }
}
