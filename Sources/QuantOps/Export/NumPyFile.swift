import Foundation

/// NumPy `.npy` files (format 1.0) of little-endian float32 arrays, written atomically; read
/// back as float32 or uint8 C-order arrays (logits, reference inputs).
public enum NumPyFile {
    /// An array read from a file: its shape, and its values as Float.
    public struct Contents: Sendable, Equatable {
        public var shape: [Int]
        public var values: [Float]
    }

    /// Reads a C-order `<f4` or `|u1` array; anything else is an error naming the file.
    public static func read(contentsOf url: URL) throws -> Contents {
        func failure(_ problem: String) -> QuantizationError {
            QuantizationError(place: url.path, problem: problem, remedy: "write it with numpy.save as float32 or uint8")
        }
        let data = try Data(contentsOf: url)
        let bytes = [UInt8](data)
        guard bytes.count >= 10, bytes[0] == 0x93, Array(bytes[1 ..< 6]) == Array("NUMPY".utf8) else {
            throw failure("is not a NumPy .npy file")
        }
        let major = bytes[6]
        let headerLength: Int
        let headerStart: Int
        if major == 1 {
            headerLength = Int(bytes[8]) | Int(bytes[9]) << 8
            headerStart = 10
        } else {
            guard bytes.count >= 12 else { throw failure("is truncated") }
            headerLength = Int(bytes[8]) | Int(bytes[9]) << 8 | Int(bytes[10]) << 16 | Int(bytes[11]) << 24
            headerStart = 12
        }
        guard headerStart + headerLength <= bytes.count else { throw failure("is truncated") }
        let header = String(decoding: bytes[headerStart ..< headerStart + headerLength], as: UTF8.self)
        guard !header.contains("'fortran_order': True") else { throw failure("is in Fortran order") }
        let width: Int
        if header.contains("'<f4'") { width = 4 } else if header.contains("'|u1'") { width = 1 } else {
            throw failure("holds neither float32 ('<f4') nor uint8 ('|u1') values")
        }
        guard let open = header.range(of: "'shape': ("), let close = header[open.upperBound...].firstIndex(of: ")") else {
            throw failure("has no shape in its header")
        }
        let shape = try header[open.upperBound ..< close].split(separator: ",").map { part -> Int in
            guard let dim = Int(part.trimmingCharacters(in: .whitespaces)), dim >= 0 else { throw failure("has shape \(header[open.upperBound ..< close])") }
            return dim
        }
        let count = shape.reduce(1) { $0.multipliedReportingOverflow(by: $1).overflow ? Int.max : $0 * $1 }
        let payload = headerStart + headerLength
        guard count <= (bytes.count - payload) / width, bytes.count - payload == count * width else {
            throw failure("has \(bytes.count - payload) bytes of data for shape \(shape)")
        }
        let values: [Float] = width == 1
            ? bytes[payload...].map { Float($0) }
            : (0 ..< count).map { index in
                let at = payload + index * 4
                return Float(bitPattern: UInt32(bytes[at]) | UInt32(bytes[at + 1]) << 8 | UInt32(bytes[at + 2]) << 16 | UInt32(bytes[at + 3]) << 24)
            }
        return Contents(shape: shape, values: values)
    }

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
