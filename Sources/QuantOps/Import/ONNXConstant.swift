import Foundation
import ONNX

/// A tensor known when the file is read: an initializer, a Constant node, or the result of the
/// shape arithmetic that exporters emit (Shape -> Gather -> Concat -> ...), which the importer
/// evaluates once for the graph's static input size.
///
/// Values are held as Double, which represents every float32 and every integer a shape
/// computation produces exactly. The batch size is not known until run time: a Shape of the
/// data tensor gives `batchSymbol` (NaN) in its place, NaN survives the arithmetic, and any use
/// that needs the number itself (ConstantOfShape, a Reshape other than to (batch, features))
/// fails with an error that says so.
struct ONNXConstant {
    static let batchSymbol = Double.nan

    var shape: [Int]
    var values: [Double]
    /// Integer and boolean tensors (shapes, indices, axes) as opposed to floating-point ones.
    var isInteger: Bool

    var count: Int { values.count }

    init(shape: [Int], values: [Double], isInteger: Bool) {
        self.shape = shape
        self.values = values
        self.isInteger = isInteger
    }

    init(integers: [Int], shape: [Int]? = nil) {
        self.init(shape: shape ?? [integers.count], values: integers.map(Double.init), isInteger: true)
    }

    /// The values as integers; `what` names them in the error when one is not an integer
    /// (the batch size among them).
    func integers(_ what: String) throws -> [Int] {
        try values.map { value in
            // Exporters write INT64_MAX/MIN for "to the end" in Slice; any bound that large
            // clamps the same way, and halving keeps later arithmetic from overflowing.
            if value.isFinite, abs(value) >= 4.0e18 { return value > 0 ? Int.max / 2 : Int.min / 2 }
            guard value.isFinite, value == value.rounded() else {
                throw ONNXFolding.Problem(value.isNaN
                    ? "\(what) depends on the batch size, which is only known at run time"
                    : "\(what) holds \(value), not an integer")
            }
            return Int(value)
        }
    }

    func floats() -> [Float] { values.map { Float($0) } }

    /// A scalar or one-element tensor.
    func scalar(_ what: String) throws -> Double {
        guard count == 1 else { throw ONNXFolding.Problem("\(what) must be a single value, has \(count)") }
        return values[0]
    }

    /// Row-major strides of `shape`.
    static func strides(_ shape: [Int]) -> [Int] {
        var strides = [Int](repeating: 1, count: shape.count)
        var step = 1
        for axis in shape.indices.reversed() {
            strides[axis] = step
            step *= shape[axis]
        }
        return strides
    }
}

/// Reading `TensorProto`s, with limits so that a damaged or hostile file gets an error rather
/// than an allocation it cannot back.
enum ONNXTensorReader {
    /// More elements than any CNN tensor has (2^31, 8 GiB as float32).
    static let elementLimit = 1 << 31

    /// `folder` is where the model file lies: tensors kept in external data files (what
    /// torch.onnx.export's dynamo exporter writes next to the model) are read from there.
    static func read(_ tensor: Onnx_TensorProto, folder: URL? = nil) throws -> ONNXConstant {
        var tensor = tensor
        if tensor.dataLocation == .external {
            tensor.rawData = try externalData(of: tensor, folder: folder)
        }
        var count = 1
        for dim in tensor.dims {
            guard dim >= 0, dim <= Int64(elementLimit) else {
                throw ONNXFolding.Problem("tensor '\(tensor.name)' declares a dimension of \(dim)")
            }
            let (product, overflow) = count.multipliedReportingOverflow(by: Int(dim))
            guard !overflow, product <= elementLimit else {
                throw ONNXFolding.Problem("tensor '\(tensor.name)' declares more than \(elementLimit) elements")
            }
            count = product
        }
        let shape = tensor.dims.map { Int($0) }
        let raw = tensor.rawData
        func fromRaw<T>(_: T.Type, _ convert: (T) -> Double) throws -> [Double] {
            let width = MemoryLayout<T>.size
            guard raw.count == count * width else {
                throw ONNXFolding.Problem("tensor '\(tensor.name)' has \(raw.count) bytes of data for \(count) elements of \(width) bytes")
            }
            return raw.withUnsafeBytes { bytes in
                (0 ..< count).map { convert(bytes.loadUnaligned(fromByteOffset: $0 * width, as: T.self)) }
            }
        }
        func checked(_ values: [Double]) throws -> [Double] {
            guard values.count == count else {
                throw ONNXFolding.Problem("tensor '\(tensor.name)' has \(values.count) values for its \(count) elements")
            }
            return values
        }
        let useRaw = !raw.isEmpty || count == 0
        let values: [Double]
        var isInteger = true
        switch Onnx_TensorProto.DataType(rawValue: Int(tensor.dataType)) {
        case .float?:
            isInteger = false
            values = useRaw ? try fromRaw(UInt32.self) { Double(Float(bitPattern: UInt32(littleEndian: $0))) }
                            : try checked(tensor.floatData.map(Double.init))
        case .double?:
            isInteger = false
            values = useRaw ? try fromRaw(UInt64.self) { Double(bitPattern: UInt64(littleEndian: $0)) }
                            : try checked(tensor.doubleData)
        case .float16?:
            isInteger = false
            values = useRaw ? try fromRaw(UInt16.self) { Double(Float(Float16(bitPattern: UInt16(littleEndian: $0)))) }
                            : try checked(tensor.int32Data.map { Double(Float(Float16(bitPattern: UInt16(truncatingIfNeeded: $0)))) })
        case .int64?:
            values = useRaw ? try fromRaw(Int64.self) { Double(Int64(littleEndian: $0)) } : try checked(tensor.int64Data.map(Double.init))
        case .int32?:
            values = useRaw ? try fromRaw(Int32.self) { Double(Int32(littleEndian: $0)) } : try checked(tensor.int32Data.map(Double.init))
        case .int16?:
            values = useRaw ? try fromRaw(Int16.self) { Double(Int16(littleEndian: $0)) } : try checked(tensor.int32Data.map(Double.init))
        case .uint16?:
            values = useRaw ? try fromRaw(UInt16.self) { Double(UInt16(littleEndian: $0)) } : try checked(tensor.int32Data.map(Double.init))
        case .int8?:
            values = useRaw ? try fromRaw(Int8.self) { Double($0) } : try checked(tensor.int32Data.map(Double.init))
        case .uint8?, .bool?:
            values = useRaw ? try fromRaw(UInt8.self) { Double($0) } : try checked(tensor.int32Data.map(Double.init))
        default:
            throw ONNXFolding.Problem("tensor '\(tensor.name)' has element type \(tensor.dataType), which qsh does not read",
                                      remedy: "store weights as float32 (or float16/double) and shapes as int64")
        }
        return ONNXConstant(shape: shape, values: values, isInteger: isInteger)
    }

    /// The bytes an external-data tensor points at: `location` (a file in the model's folder),
    /// `offset` and `length`.
    static func externalData(of tensor: Onnx_TensorProto, folder: URL?) throws -> Data {
        var entries: [String: String] = [:]
        for entry in tensor.externalData { entries[entry.key] = entry.value }
        guard let folder else {
            throw ONNXFolding.Problem("tensor '\(tensor.name)' keeps its data in an external file, and the model was not read from a folder",
                                      remedy: "load the .onnx file from its folder, or save it with its weights inside (save_as_external_data=False)")
        }
        guard let location = entries["location"], !location.isEmpty, !location.hasPrefix("/"),
              !location.split(separator: "/").contains("..") else {
            throw ONNXFolding.Problem("tensor '\(tensor.name)' names external data '\(entries["location"] ?? "")' outside the model's folder")
        }
        let url = folder.appendingPathComponent(location)
        let offset = Int(entries["offset"] ?? "0") ?? -1
        let length = entries["length"].map { Int($0) ?? -1 }
        guard offset >= 0, length.map({ $0 >= 0 }) ?? true else {
            throw ONNXFolding.Problem("tensor '\(tensor.name)' has external data offset \(entries["offset"] ?? "") and length \(entries["length"] ?? "")")
        }
        let handle: FileHandle
        do {
            handle = try FileHandle(forReadingFrom: url)
        } catch {
            throw ONNXFolding.Problem("tensor '\(tensor.name)' keeps its data in '\(location)', which cannot be read",
                                      remedy: "keep \(location) next to the .onnx file")
        }
        defer { try? handle.close() }
        let size = (try? handle.seekToEnd()).map(Int.init) ?? 0
        let count = length ?? (size - offset)
        guard offset <= size, count <= size - offset, count <= elementLimit * 8 else {
            throw ONNXFolding.Problem("tensor '\(tensor.name)' reaches past the end of '\(location)' (\(size) bytes)")
        }
        try handle.seek(toOffset: UInt64(offset))
        return try handle.read(upToCount: count) ?? Data()
    }
}
