import Foundation

extension CIFAR10 {
    /// The data set in the CIFAR-10 binary layout: per image, 1 label byte and 3072 pixel bytes.
    public func binaryRecords() -> Data {
        var data = Data(count: count * Self.recordSize)
        data.withUnsafeMutableBytes { (raw: UnsafeMutableRawBufferPointer) in
            let target = raw.bindMemory(to: UInt8.self)
            pixels.withUnsafeBufferPointer { source in
                for record in 0 ..< count {
                    let start = record * Self.recordSize
                    target[start] = labels[record]
                    for i in 0 ..< Self.imageSize { target[start + 1 + i] = source[record * Self.imageSize + i] }
                }
            }
        }
        return data
    }

    /// Writes `binaryRecords()` to `url`; the file appears only when complete, so
    /// `CIFAR10(name:files:)` reads it back.
    public func write(to url: URL) throws {
        try AtomicFile.write(binaryRecords(), to: url)
    }
}
