import Foundation

/// A callable that a checkpoint pickle may name. Anything else is refused when it is named, so no
/// pickle can reach code outside this list; even these are interpreted here, never called.
enum PickleGlobal: Equatable {
    case orderedDict
    case rebuildTensor
    case rebuildParameter
    case torchSize
    case storageType(StateDict.ElementType)

    static let allowList: [String: PickleGlobal] = [
        "collections.OrderedDict": .orderedDict,
        // Torch before 0.4 wrote the first form: (storage, offset, size, stride) only.
        "torch._utils._rebuild_tensor": .rebuildTensor,
        "torch._utils._rebuild_tensor_v2": .rebuildTensor,
        "torch._utils._rebuild_parameter": .rebuildParameter,
        "torch.Size": .torchSize,
        "torch.FloatStorage": .storageType(.float32),
        "torch.DoubleStorage": .storageType(.float64),
        "torch.HalfStorage": .storageType(.float16),
        "torch.BFloat16Storage": .storageType(.bfloat16),
        "torch.LongStorage": .storageType(.int64),
        "torch.IntStorage": .storageType(.int32),
        "torch.ShortStorage": .storageType(.int16),
        "torch.CharStorage": .storageType(.int8),
        "torch.ByteStorage": .storageType(.uint8),
        "torch.BoolStorage": .storageType(.bool),
    ]
}

/// Where a tensor's elements live: a storage named by key, typed, with its element count.
struct StorageReference: Equatable {
    var key: String
    var elementType: StateDict.ElementType
    var elementCount: Int
    /// Legacy files may save a view into a larger storage: elements from `offset` on.
    var viewOffset: Int = 0
}

/// A tensor as the pickle describes it: a strided window onto a storage.
struct TensorReference: Equatable {
    var storage: StorageReference
    var storageOffset: Int
    var shape: [Int]
    var strides: [Int]
}

/// A value on the unpickler's stack. Containers live in `Unpickler.objects` and are referred to by
/// index, so hostile nesting or reference cycles cannot overflow the stack when values are torn
/// down, and nothing here ever walks a structure recursively.
enum PickleValue: Equatable {
    case none
    case bool(Bool)
    case int(Int)
    /// An integer wider than 64 bits, as two's-complement little-endian bytes.
    case wideInt([UInt8])
    case float(Double)
    case string(String)
    case bytes(Int)
    case global(PickleGlobal)
    case object(Int)
}

enum PickleObject {
    case tuple([PickleValue])
    case list([PickleValue])
    case dict(PickleDictionary)
    case tensor(TensorReference)
    case storage(StorageReference)
}

struct PickleDictionary {
    private(set) var keys: [PickleValue] = []
    private(set) var values: [PickleValue] = []
    private var positionOfStringKey: [String: Int] = [:]

    mutating func set(_ value: PickleValue, for key: PickleValue) {
        if case .string(let text) = key {
            if let position = positionOfStringKey[text] {
                values[position] = value
                return
            }
            positionOfStringKey[text] = keys.count
        }
        keys.append(key)
        values.append(value)
    }

    func value(for text: String) -> PickleValue? {
        positionOfStringKey[text].map { values[$0] }
    }
}

/// A safe interpreter for the subset of the pickle protocol that `torch.save` writes for state
/// dicts. It builds plain values; globals resolve only through `PickleGlobal.allowList`.
///
/// Every opcode consumes at least one byte and pushes at most one value, so memory and time are
/// bounded by the input length, and the stack cannot grow past the number of opcodes read.
struct Unpickler {
    private var reader: ByteReader
    private var stack: [PickleValue] = []
    private var markPositions: [Int] = []
    private var memo: [Int: PickleValue] = [:]
    private(set) var objects: [PickleObject] = []

    init(bytes: [UInt8], fileName: String, start: Int = 0, end: Int? = nil) {
        reader = ByteReader(bytes: bytes, fileName: fileName, start: start, end: end)
    }

    /// Where the next pickle in the same buffer would start.
    var position: Int { reader.position }
    private var fileName: String { reader.fileName }

    func object(_ value: PickleValue) -> PickleObject? {
        guard case .object(let index) = value, objects.indices.contains(index) else { return nil }
        return objects[index]
    }

    private func corrupt(_ problem: String) -> CheckpointError {
        CheckpointError(.corrupt, file: fileName, problem: "pickle: \(problem)", remedy: CheckpointError.redownloadAdvice)
    }

    private mutating func push(_ object: PickleObject) {
        objects.append(object)
        stack.append(.object(objects.count - 1))
    }

    private mutating func pop(_ opcode: String) throws -> PickleValue {
        // Never below the innermost MARK, so every recorded mark stays within the stack.
        let floor = markPositions.last ?? 0
        guard stack.count > floor, let value = stack.popLast() else {
            throw corrupt("\(opcode) at offset \(reader.position - 1) finds an empty stack")
        }
        return value
    }

    private mutating func popToMark(_ opcode: String) throws -> [PickleValue] {
        guard let mark = markPositions.popLast() else {
            throw corrupt("\(opcode) at offset \(reader.position - 1) has no matching MARK")
        }
        let items = Array(stack[mark...])
        stack.removeSubrange(mark...)
        return items
    }

    private mutating func memoize(_ index: Int) throws {
        guard let top = stack.last else { throw corrupt("memo store at offset \(reader.position) with an empty stack") }
        memo[index] = top
    }

    private mutating func recall(_ index: Int) throws {
        guard let value = memo[index] else { throw corrupt("memo entry \(index) is read before it is written") }
        stack.append(value)
    }

    private mutating func text(_ count: Int, what: String) throws -> String {
        let slice = try reader.take(count, what: what)
        guard let string = String(bytes: slice, encoding: .utf8) else {
            throw corrupt("\(what) at offset \(reader.position - count) is not valid UTF-8")
        }
        return string
    }

    private mutating func length(width: Int, what: String) throws -> Int {
        let value = try reader.unsignedLittleEndian(width, what: "\(what) length")
        guard value <= UInt64(reader.remaining) else {
            throw reader.truncated(what, needing: value > UInt64(Int.max) ? Int.max : Int(value))
        }
        return Int(value)
    }

    private mutating func integer(littleEndianBytes count: Int) throws -> PickleValue {
        let bytes = Array(try reader.take(count, what: "integer"))
        guard !bytes.isEmpty else { return .int(0) }
        guard bytes.count <= 8 else { return .wideInt(bytes) }
        var value: UInt64 = 0
        for (shift, byte) in bytes.enumerated() { value |= UInt64(byte) << (8 * UInt64(shift)) }
        if bytes.count < 8, bytes[bytes.count - 1] & 0x80 != 0 {
            value |= ~UInt64(0) << (8 * UInt64(bytes.count))
        }
        return .int(Int(Int64(bitPattern: value)))
    }

    private func resolve(module: String, name: String) throws -> PickleGlobal {
        let qualified = "\(module).\(name)"
        guard let global = PickleGlobal.allowList[qualified] else {
            throw CheckpointError(
                .refused, file: fileName,
                problem: "refusing to load: the checkpoint asks to call `\(qualified)`, which is not a tensor or container",
                remedy: "Only state dicts of tensors are read; re-save with torch.save(model.state_dict(), path) from trusted code")
        }
        return global
    }

    /// Runs opcodes up to and including STOP and returns the pickled value.
    mutating func load() throws -> PickleValue {
        while true {
            let opcodeOffset = reader.position
            let opcode = try reader.byte("pickle opcode")
            switch opcode {
            case 0x80: // PROTO
                let version = try reader.byte("protocol version")
                guard version <= 5 else { throw corrupt("unknown pickle protocol \(version)") }
            case 0x95: // FRAME: a length prefix for buffering; the content follows inline.
                _ = try reader.unsignedLittleEndian(8, what: "frame length")
            case UInt8(ascii: "."): // STOP
                return try pop("STOP")
            case UInt8(ascii: "("): // MARK
                markPositions.append(stack.count)
            case UInt8(ascii: "}"): push(.dict(PickleDictionary()))
            case UInt8(ascii: "]"): push(.list([]))
            case UInt8(ascii: ")"): push(.tuple([]))
            case UInt8(ascii: "N"): stack.append(.none)
            case 0x88: stack.append(.bool(true))
            case 0x89: stack.append(.bool(false))
            case UInt8(ascii: "J"): // BININT
                let raw = try reader.unsignedLittleEndian(4, what: "BININT")
                stack.append(.int(Int(Int32(bitPattern: UInt32(raw)))))
            case UInt8(ascii: "K"): stack.append(.int(Int(try reader.byte("BININT1"))))
            case UInt8(ascii: "M"): stack.append(.int(Int(try reader.unsignedLittleEndian(2, what: "BININT2"))))
            case 0x8A: // LONG1
                stack.append(try integer(littleEndianBytes: Int(try reader.byte("LONG1 length"))))
            case 0x8B: // LONG4
                stack.append(try integer(littleEndianBytes: try length(width: 4, what: "LONG4")))
            case UInt8(ascii: "G"): // BINFLOAT, big-endian
                let span = try reader.take(8, what: "BINFLOAT")
                let bits = span.reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
                stack.append(.float(Double(bitPattern: bits)))
            case UInt8(ascii: "X"): stack.append(.string(try text(try length(width: 4, what: "BINUNICODE"), what: "BINUNICODE")))
            case 0x8C: stack.append(.string(try text(Int(try reader.byte("SHORT_BINUNICODE length")), what: "SHORT_BINUNICODE")))
            case 0x8D: stack.append(.string(try text(try length(width: 8, what: "BINUNICODE8"), what: "BINUNICODE8")))
            case UInt8(ascii: "U"): // SHORT_BINSTRING (latin-1)
                let count = Int(try reader.byte("SHORT_BINSTRING length"))
                stack.append(.string(String(decoding: try reader.take(count, what: "SHORT_BINSTRING").map { UInt16($0) }, as: UTF16.self)))
            case UInt8(ascii: "C"): // SHORT_BINBYTES
                let count = Int(try reader.byte("SHORT_BINBYTES length"))
                try reader.skip(count, what: "SHORT_BINBYTES")
                stack.append(.bytes(count))
            case UInt8(ascii: "B"), 0x8E: // BINBYTES, BINBYTES8
                let count = try length(width: opcode == 0x8E ? 8 : 4, what: "BINBYTES")
                try reader.skip(count, what: "BINBYTES")
                stack.append(.bytes(count))
            case UInt8(ascii: "q"): try memoize(Int(try reader.byte("BINPUT index")))
            case UInt8(ascii: "r"): try memoize(Int(try reader.unsignedLittleEndian(4, what: "LONG_BINPUT index")))
            case 0x94: try memoize(memo.count) // MEMOIZE
            case UInt8(ascii: "h"): try recall(Int(try reader.byte("BINGET index")))
            case UInt8(ascii: "j"): try recall(Int(try reader.unsignedLittleEndian(4, what: "LONG_BINGET index")))
            case UInt8(ascii: "0"): _ = try pop("POP")
            case UInt8(ascii: "1"): _ = try popToMark("POP_MARK")
            case UInt8(ascii: "2"): // DUP
                let top = try pop("DUP")
                stack.append(top)
                stack.append(top)
            case 0x85, 0x86, 0x87: // TUPLE1, TUPLE2, TUPLE3
                var items: [PickleValue] = []
                for _ in 0..<Int(opcode - 0x84) { items.insert(try pop("TUPLE"), at: 0) }
                push(.tuple(items))
            case UInt8(ascii: "t"): push(.tuple(try popToMark("TUPLE")))
            case UInt8(ascii: "l"): push(.list(try popToMark("LIST")))
            case UInt8(ascii: "d"): // DICT
                let items = try popToMark("DICT")
                try pushDictionary(pairs: items, into: nil)
            case UInt8(ascii: "a"): // APPEND
                let item = try pop("APPEND")
                try appendToList(below: [item], opcode: "APPEND")
            case UInt8(ascii: "e"): // APPENDS
                let items = try popToMark("APPENDS")
                try appendToList(below: items, opcode: "APPENDS")
            case UInt8(ascii: "s"): // SETITEM
                let value = try pop("SETITEM")
                let key = try pop("SETITEM")
                try pushDictionary(pairs: [key, value], into: try pop("SETITEM"))
            case UInt8(ascii: "u"): // SETITEMS
                let items = try popToMark("SETITEMS")
                try pushDictionary(pairs: items, into: try pop("SETITEMS"))
            case UInt8(ascii: "c"): // GLOBAL
                let module = String(decoding: try reader.line("GLOBAL module"), as: UTF8.self)
                let name = String(decoding: try reader.line("GLOBAL name"), as: UTF8.self)
                stack.append(.global(try resolve(module: module, name: name)))
            case 0x93: // STACK_GLOBAL
                let name = try pop("STACK_GLOBAL")
                let module = try pop("STACK_GLOBAL")
                guard case .string(let moduleText) = module, case .string(let nameText) = name else {
                    throw corrupt("STACK_GLOBAL at offset \(opcodeOffset) needs two strings")
                }
                stack.append(.global(try resolve(module: moduleText, name: nameText)))
            case UInt8(ascii: "R"), 0x81: // REDUCE, NEWOBJ: only allow-listed globals get here.
                let arguments = try pop("REDUCE")
                let callable = try pop("REDUCE")
                stack.append(try call(callable, arguments: arguments, at: opcodeOffset))
            case UInt8(ascii: "Q"): // BINPERSID
                let identifier = try pop("BINPERSID")
                push(.storage(try storageReference(identifier, at: opcodeOffset)))
            case UInt8(ascii: "b"): // BUILD: object state (such as a state dict's `_metadata`) is not needed.
                _ = try pop("BUILD")
                let built = try pop("BUILD")
                stack.append(built)
            default:
                throw CheckpointError(
                    .unsupported, file: fileName,
                    problem: "pickle opcode 0x\(String(opcode, radix: 16)) at offset \(opcodeOffset) is not one that tensor checkpoints use",
                    remedy: "Re-save the checkpoint with torch.save(model.state_dict(), path)")
            }
        }
    }

    private mutating func appendToList(below items: [PickleValue], opcode: String) throws {
        let target = try pop(opcode)
        guard case .object(let index) = target, case .list(var list) = objects[index] else {
            throw corrupt("\(opcode) at offset \(reader.position - 1) appends to something that is not a list")
        }
        objects[index] = .list([]) // release the old buffer so the append does not copy it
        list.append(contentsOf: items)
        objects[index] = .list(list)
        stack.append(target)
    }

    /// Adds key/value pairs to the dictionary `target`, or to a new one when `target` is nil.
    private mutating func pushDictionary(pairs: [PickleValue], into target: PickleValue?) throws {
        guard pairs.count % 2 == 0 else { throw corrupt("dictionary items at offset \(reader.position - 1) come in an odd number") }
        var index: Int
        if let target {
            guard case .object(let existing) = target, case .dict = objects[existing] else {
                throw corrupt("SETITEM at offset \(reader.position - 1) stores into something that is not a dict")
            }
            index = existing
        } else {
            objects.append(.dict(PickleDictionary()))
            index = objects.count - 1
        }
        guard case .dict(var dictionary) = objects[index] else { return }
        objects[index] = .tuple([])
        for pair in stride(from: 0, to: pairs.count, by: 2) { dictionary.set(pairs[pair + 1], for: pairs[pair]) }
        objects[index] = .dict(dictionary)
        stack.append(.object(index))
    }

    private func tupleItems(_ value: PickleValue) -> [PickleValue]? {
        if case .tuple(let items)? = object(value) { return items }
        return nil
    }

    private func nonNegativeIntegers(_ value: PickleValue) -> [Int]? {
        guard let items = tupleItems(value) else { return nil }
        var result: [Int] = []
        for item in items {
            guard case .int(let number) = item, number >= 0 else { return nil }
            result.append(number)
        }
        return result
    }

    private mutating func call(_ callable: PickleValue, arguments: PickleValue, at offset: Int) throws -> PickleValue {
        guard case .global(let global) = callable else {
            throw corrupt("REDUCE at offset \(offset) calls something that is not a known global")
        }
        guard let items = tupleItems(arguments) else {
            throw corrupt("REDUCE at offset \(offset) has arguments that are not a tuple")
        }
        switch global {
        case .orderedDict:
            guard items.isEmpty else { throw corrupt("OrderedDict at offset \(offset) is built with arguments") }
            objects.append(.dict(PickleDictionary()))
            return .object(objects.count - 1)
        case .torchSize:
            guard items.count == 1, let sizes = nonNegativeIntegers(items[0]) else {
                throw corrupt("torch.Size at offset \(offset) is not given a tuple of sizes")
            }
            objects.append(.tuple(sizes.map { PickleValue.int($0) }))
            return .object(objects.count - 1)
        case .rebuildParameter:
            guard let first = items.first, case .tensor? = object(first) else {
                throw corrupt("_rebuild_parameter at offset \(offset) does not wrap a tensor")
            }
            return first
        case .rebuildTensor:
            guard items.count >= 4, case .storage(let storage)? = object(items[0]),
                  case .int(let storageOffset) = items[1], storageOffset >= 0,
                  let shape = nonNegativeIntegers(items[2]), let strides = nonNegativeIntegers(items[3]),
                  shape.count == strides.count
            else {
                throw corrupt("_rebuild_tensor at offset \(offset) lacks a storage, offset, size and stride")
            }
            objects.append(.tensor(TensorReference(storage: storage, storageOffset: storageOffset, shape: shape, strides: strides)))
            return .object(objects.count - 1)
        case .storageType:
            throw corrupt("a storage type is called at offset \(offset); storages come only from persistent ids")
        }
    }

    /// Interprets torch's persistent id: ('storage', storage_type, key, location, numel) and, in
    /// legacy files, a sixth item: None or (view_key, offset, view_size).
    private func storageReference(_ identifier: PickleValue, at offset: Int) throws -> StorageReference {
        guard let items = tupleItems(identifier), items.count >= 5,
              items[0] == .string("storage"),
              case .global(.storageType(let type)) = items[1],
              case .int(let count) = items[4], count >= 0
        else {
            throw corrupt("persistent id at offset \(offset) is not ('storage', type, key, location, size)")
        }
        let key: String
        switch items[2] {
        case .string(let text): key = text
        case .int(let number): key = String(number)
        default: throw corrupt("persistent id at offset \(offset) has a storage key that is not text")
        }
        var reference = StorageReference(key: key, elementType: type, elementCount: count)
        if items.count >= 6, items[5] != .none {
            guard let view = tupleItems(items[5]), view.count == 3,
                  case .int(let viewOffset) = view[1], case .int(let viewCount) = view[2],
                  viewOffset >= 0, viewCount >= 0, viewOffset <= count, viewCount <= count - viewOffset
            else { throw corrupt("storage view at offset \(offset) lies outside its storage") }
            reference.viewOffset = viewOffset
            reference.elementCount = viewCount
        }
        return reference
    }
}
