import Foundation
import ZIPFoundation

/// Deflated zip entries, inflated here rather than by ZIPFoundation: on Linux its inflate loop
/// asks for more input forever when a damaged entry's deflate stream runs to the end of the file
/// (found by fuzzing, docs/fuzzing.md), so `load` would never return. Here the input is exactly
/// the entry's compressed bytes, and a stream that has not ended when they run out is an error.
/// torch.save stores entries uncompressed; only re-zipped checkpoints come this way.
enum DeflatedZipEntry {
    /// The entry's inflated bytes, at most `limit` of them, checked against its CRC-32.
    static func read(path: String, compressedSize: UInt64, limit: UInt64, checksum: UInt32, from url: URL,
                     fileName: String) throws -> [UInt8] {
        func corrupt(_ problem: String) -> CheckpointError {
            CheckpointError(.corrupt, file: fileName, problem: "zip entry \(path) \(problem)", remedy: CheckpointError.redownloadAdvice)
        }
        let file: Data
        do {
            file = try Data(contentsOf: url, options: .alwaysMapped)
        } catch {
            throw CheckpointError(.io, file: fileName, problem: "cannot be read (\(error.localizedDescription))")
        }
        guard let start = dataOffset(of: path, in: file) else { throw corrupt("has no local file header") }
        guard compressedSize <= UInt64(UInt32.max), UInt64(start) + compressedSize <= UInt64(file.count) else {
            throw corrupt("claims \(compressedSize) compressed bytes, past the end of the file")
        }
        let compressed = file.subdata(in: start..<(start + Int(compressedSize)))
        var output: [UInt8] = []
        output.reserveCapacity(Int(min(limit, UInt64(CheckpointLimits.maximumZipReservation))))
        let actual: CRC32
        do {
            // ZIPFoundation's own inflate, fed by a provider that ends at the entry's last byte.
            actual = try Data.decompress(size: Int64(limit), bufferSize: 1 << 16, skipCRC32: false, provider: { position, size in
                let from = Int(position)
                guard from < compressed.count else { throw corrupt("ends before its deflate stream does") }
                var chunk = compressed.subdata(in: from..<min(from + size, compressed.count))
                // ZIPFoundation tells zlib that every chunk holds `size` bytes, so a short last
                // chunk would let inflate read past it (found by fuzzing: a read off the end of
                // the mapped file). Zeros fill it: a stream cut short then fails to decode or its
                // CRC-32, and bytes after a stream's end are never read.
                if chunk.count < size { chunk.append(Data(count: size - chunk.count)) }
                return chunk
            }, consumer: { chunk in
                guard UInt64(output.count + chunk.count) <= limit else { throw corrupt("decompresses past its declared size") }
                output.append(contentsOf: chunk)
            })
        } catch let error as CheckpointError {
            throw error
        } catch {
            throw corrupt("holds damaged deflate data (\(error))")
        }
        guard actual == checksum else { throw corrupt("fails its CRC-32 check") }
        return output
    }

    /// Where the data of the entry named `path` starts: after the first local file header
    /// (signature `PK\3\4`) that carries that name.
    static func dataOffset(of path: String, in file: Data) -> Int? {
        let name = Array(path.utf8)
        let signature = Data([0x50, 0x4b, 0x03, 0x04])
        var searchStart = file.startIndex
        while let found = file.range(of: signature, in: searchStart..<file.endIndex) {
            let header = found.lowerBound
            searchStart = header + 1
            guard header + 30 <= file.endIndex else { return nil }
            let nameLength = Int(file[header + 26]) | Int(file[header + 27]) << 8
            let extraLength = Int(file[header + 28]) | Int(file[header + 29]) << 8
            let nameStart = header + 30
            guard nameLength == name.count, nameStart + nameLength + extraLength <= file.endIndex,
                  file[nameStart..<(nameStart + nameLength)].elementsEqual(name) else { continue }
            return nameStart + nameLength + extraLength - file.startIndex
        }
        return nil
    }
}
