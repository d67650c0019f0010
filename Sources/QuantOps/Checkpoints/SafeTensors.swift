import Foundation

/// Reads the safetensors format: an 8-byte little-endian header length, a JSON header mapping
/// each name to dtype, shape and byte range, optional `__metadata__`, then the raw data.
enum SafeTensorsReader {
    /// The specification caps the header at 100 MB; anything larger is not a real file.
    static let maximumHeaderLength = CheckpointLimits.maximumSafeTensorsHeaderBytes

    static func looksLikeSafeTensors(_ bytes: [UInt8]) -> Bool {
        guard bytes.count >= 10 else { return false }
        var reader = ByteReader(bytes: bytes, fileName: "")
        guard let length = try? reader.unsignedLittleEndian(8, what: "header length"),
              length >= 2, length <= UInt64(bytes.count - 8) else { return false }
        return bytes[8] == UInt8(ascii: "{")
    }

    static func read(_ bytes: [UInt8], fileName: String) throws -> Checkpoint {
        func corrupt(_ problem: String) -> CheckpointError {
            CheckpointError(.corrupt, file: fileName, problem: problem, remedy: CheckpointError.redownloadAdvice)
        }
        var reader = ByteReader(bytes: bytes, fileName: fileName)
        let headerLength = try reader.unsignedLittleEndian(8, what: "safetensors header length")
        guard headerLength <= UInt64(maximumHeaderLength) else {
            throw corrupt("safetensors header claims \(headerLength) bytes, more than the format's 100 MB limit")
        }
        let headerRange = try reader.range(Int(headerLength), what: "safetensors JSON header")
        let dataStart = headerRange.upperBound
        let dataLength = bytes.count - dataStart

        let json: Any
        do {
            json = try JSONSerialization.jsonObject(with: Data(bytes[headerRange]))
        } catch {
            throw corrupt("safetensors header is not valid JSON (\(error.localizedDescription))")
        }
        guard let header = json as? [String: Any] else {
            throw corrupt("safetensors header is not a JSON object")
        }

        var metadata: [String: String] = [:]
        struct Located { var name: String; var type: StateDict.ElementType; var shape: [Int]; var begin: Int; var end: Int }
        var located: [Located] = []
        for (name, value) in header {
            if name == SafeTensorsWriter.metadataKey {
                guard let table = value as? [String: Any] else { throw corrupt("`__metadata__` is not a JSON object") }
                for (key, entry) in table {
                    guard let text = entry as? String else { throw corrupt("`__metadata__` value for `\(key)` is not a string") }
                    metadata[key] = text
                }
                continue
            }
            guard let fields = value as? [String: Any],
                  let dtype = fields["dtype"] as? String,
                  let shape = integers(fields["shape"]),
                  let offsets = integers(fields["data_offsets"]), offsets.count == 2
            else { throw corrupt("tensor `\(name)` lacks a string dtype, an integer shape or two data_offsets") }
            guard let type = StateDict.ElementType(rawValue: dtype) else {
                throw CheckpointError(
                    .unsupported, file: fileName,
                    problem: "tensor `\(name)` has dtype \(dtype), which this reader does not convert",
                    remedy: "Supported: \(supportedTypes); convert the tensor to F32 before saving")
            }
            guard let count = CheckpointFile.elementCount(shape) else {
                throw corrupt("tensor `\(name)` has an impossible shape \(shape)")
            }
            let (begin, end) = (offsets[0], offsets[1])
            let (bytesNeeded, overflow) = count.multipliedReportingOverflow(by: ElementCodec.byteWidth(type))
            guard !overflow, begin >= 0, end >= begin, end - begin == bytesNeeded else {
                throw corrupt("tensor `\(name)`: data_offsets [\(begin), \(end)] do not hold \(count) \(dtype) values")
            }
            guard end <= dataLength else {
                throw CheckpointError(
                    .truncated, file: fileName,
                    problem: "truncated: tensor `\(name)` needs bytes up to \(dataStart + end), file has \(bytes.count)",
                    remedy: CheckpointError.redownloadAdvice)
            }
            located.append(Located(name: name, type: type, shape: shape, begin: begin, end: end))
        }

        // JSON objects are unordered; the data order is the order the writer laid tensors out.
        located.sort { ($0.begin, $0.name) < ($1.begin, $1.name) }
        // As in the reference implementation, tensors never share bytes: overlapping ranges
        // would let a small file decode the same megabyte once per header entry.
        let filled = located.filter { $0.end > $0.begin }
        for (previous, next) in zip(filled, filled.dropFirst()) where next.begin < previous.end {
            throw corrupt("tensors `\(previous.name)` and `\(next.name)` overlap (data_offsets [\(previous.begin), \(previous.end)] and [\(next.begin), \(next.end)])")
        }
        var dict = StateDict()
        for item in located {
            let values = ElementCodec.decodeContiguous(
                item.type, bytes: bytes, base: dataStart + item.begin, count: (item.end - item.begin) / ElementCodec.byteWidth(item.type))
            dict[item.name] = StateDict.Entry(tensor: Tensor(shape: item.shape, data: values), elementType: item.type)
        }
        return Checkpoint(stateDict: dict, metadata: metadata, format: .safetensors)
    }

    static let supportedTypes = "F32, F64, F16, BF16, I64, I32, I16, I8, U8, BOOL"

    /// Integers from a JSON array, rejecting fractions, negatives and non-numbers.
    private static func integers(_ value: Any?) -> [Int]? {
        guard let array = value as? [Any] else { return nil }
        var result: [Int] = []
        result.reserveCapacity(array.count)
        for element in array {
            guard let number = element as? NSNumber,
                  !isBoolean(number),
                  let integer = Int(exactly: number.doubleValue), integer >= 0 else { return nil }
            result.append(integer)
        }
        return result
    }

    /// JSON booleans also arrive as NSNumber; they are never valid sizes or offsets.
    private static func isBoolean(_ number: NSNumber) -> Bool {
        String(cString: number.objCType) == "c"
    }
}

public enum SafeTensorsWriter {
    /// The header key of the metadata table, which no tensor may be named.
    public static let metadataKey = "__metadata__"

    /// Writes `dict` in safetensors format, each tensor in its recorded element type, in the
    /// dictionary's key order. Writes atomically: a temporary file in the same directory is
    /// renamed over `url` only once complete, so a failure never leaves a half-written file.
    public static func write(_ dict: StateDict, to url: URL, metadata: [String: String] = [:]) throws {
        guard !dict.keys.contains(metadataKey) else {
            throw CheckpointError(
                .unsupported, file: url.lastPathComponent, problem: "cannot save a tensor named `\(metadataKey)` as safetensors",
                remedy: "Rename the tensor; the safetensors header reserves that name for metadata")
        }
        let data = encode(dict, metadata: metadata)
        do {
            try AtomicFile.write(data, to: url)
        } catch {
            throw CheckpointError(
                .io, file: url.lastPathComponent, problem: "cannot save: \(error)",
                remedy: "Check that the directory exists and is writable")
        }
    }

    /// The complete file contents; a tensor named `metadataKey` would not read back.
    public static func encode(_ dict: StateDict, metadata: [String: String] = [:]) -> Data {
        var header = "{"
        var fields: [String] = []
        if !metadata.isEmpty {
            let pairs = metadata.keys.sorted().map { "\(jsonString($0)):\(jsonString(metadata[$0] ?? ""))" }
            fields.append("\"__metadata__\":{\(pairs.joined(separator: ","))}")
        }
        var payload: [UInt8] = []
        for key in dict.keys {
            guard let entry = dict[key] else { continue }
            let begin = payload.count
            ElementCodec.encode(entry.tensor.data, as: entry.elementType, into: &payload)
            let shape = entry.tensor.shape.map(String.init).joined(separator: ",")
            fields.append(
                "\(jsonString(key)):{\"dtype\":\"\(entry.elementType.rawValue)\",\"shape\":[\(shape)],\"data_offsets\":[\(begin),\(payload.count)]}")
        }
        header += fields.joined(separator: ",") + "}"
        var headerBytes = Array(header.utf8)
        // Pad so the data starts 8-byte aligned, as the reference implementation does.
        while (8 + headerBytes.count) % 8 != 0 { headerBytes.append(UInt8(ascii: " ")) }
        var file = Data(capacity: 8 + headerBytes.count + payload.count)
        withUnsafeBytes(of: UInt64(headerBytes.count).littleEndian) { file.append(contentsOf: $0) }
        file.append(contentsOf: headerBytes)
        file.append(contentsOf: payload)
        return file
    }

    static func jsonString(_ text: String) -> String {
        var escaped = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": escaped += "\\\""
            case "\\": escaped += "\\\\"
            case "\n": escaped += "\\n"
            case "\r": escaped += "\\r"
            case "\t": escaped += "\\t"
            case _ where scalar.value < 0x20:
                escaped += String(format: "\\u%04x", scalar.value)
            default: escaped.unicodeScalars.append(scalar)
            }
        }
        return escaped + "\""
    }
}
