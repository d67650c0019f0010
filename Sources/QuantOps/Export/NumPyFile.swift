import Foundation

/// NumPy `.npy` files (format 1.0) of little-endian float32 arrays, written atomically.
public enum NumPyFile {
    /// The bytes of a C-order float32 array of `shape`.
    public static func encode(_ values: [Float], shape: [Int]) -> Data {
        precondition(shape.reduce(1, *) == values.count, "shape \(shape) does not hold \(values.count) values")
        let dims = shape.map(String.init).joined(separator: ", ") + (shape.count == 1 ? "," : "")
        var header = "{'descr': '<f4', 'fortran_order': False, 'shape': (\(dims)), }"
        // Magic (6) + version (2) + length (2) + header + newline, padded to a multiple of 64.
        let unpadded = 10 + header.utf8.count + 1
        header += String(repeating: " ", count: (64 - unpadded % 64) % 64) + "\n"
        var data = Data([0x93] + Array("NUMPY".utf8) + [1, 0])
        let length = UInt16(header.utf8.count)
        data.append(contentsOf: [UInt8(length & 0xff), UInt8(length >> 8)])
        data.append(contentsOf: Array(header.utf8))
        var payload = [UInt8]()
        payload.reserveCapacity(values.count * 4)
        for value in values {
            withUnsafeBytes(of: value.bitPattern.littleEndian) { payload.append(contentsOf: $0) }
        }
        data.append(contentsOf: payload)
        return data
    }

    /// Writes the array to `url`; the file appears only when complete.
    public static func write(_ values: [Float], shape: [Int], to url: URL) throws {
        do {
            try AtomicFile.write(encode(values, shape: shape), to: url)
        } catch let failure as AtomicFile.Failure {
            throw QuantizationError(place: url.path, problem: failure.description)
        }
    }
}
