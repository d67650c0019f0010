import Foundation
import ZIPFoundation

/// The raw elements of one storage: a range of a byte buffer holding `elementCount` values.
struct StorageBytes {
    var bytes: [UInt8]
    var start: Int
    var elementCount: Int
    var elementType: StateDict.ElementType
}

/// Turns an unpickled torch checkpoint into a `Checkpoint`, given the storages' bytes.
enum TorchStateDictAssembler {
    /// Containers that training scripts commonly wrap a state dict in, tried in order.
    static let stateDictKeys = ["state_dict", "model_state_dict", "model", "net"]

    /// The dictionary holding the tensors, and the scalar entries beside it.
    static func locateStateDict(
        _ root: PickleValue, in unpickler: Unpickler, fileName: String
    ) throws -> (tensors: PickleDictionary, metadata: [String: String]) {
        guard case .dict(let top)? = unpickler.object(root) else {
            throw CheckpointError(
                .unsupported, file: fileName,
                problem: "the checkpoint holds a \(describe(root, in: unpickler)), not a dict of tensors",
                remedy: "Save model.state_dict() rather than the model object")
        }
        var metadata: [String: String] = [:]
        var tensors = top
        for key in stateDictKeys {
            if let nested = top.value(for: key), case .dict(let inner)? = unpickler.object(nested) {
                tensors = inner
                break
            }
        }
        for (key, value) in zip(top.keys, top.values) {
            if case .string(let name) = key, let text = scalarText(value) { metadata[name] = text }
        }
        return (tensors, metadata)
    }

    static func scalarText(_ value: PickleValue) -> String? {
        switch value {
        case .int(let number): String(number)
        case .float(let number): String(number)
        case .bool(let flag): String(flag)
        case .string(let text): text
        default: nil
        }
    }

    static func describe(_ value: PickleValue, in unpickler: Unpickler) -> String {
        switch value {
        case .object(let index):
            switch unpickler.objects[index] {
            case .tuple: "tuple"
            case .list: "list"
            case .dict: "dict"
            case .tensor: "tensor"
            case .storage: "storage"
            }
        case .none: "None"
        case .global: "class"
        default: "scalar"
        }
    }

    /// The tensor references by key, in the pickle's order.
    static func tensorReferences(
        _ dictionary: PickleDictionary, in unpickler: Unpickler, fileName: String
    ) throws -> [(String, TensorReference)] {
        var result: [(String, TensorReference)] = []
        for (key, value) in zip(dictionary.keys, dictionary.values) {
            guard case .tensor(let reference)? = unpickler.object(value) else { continue }
            guard case .string(let name) = key else {
                throw CheckpointError(.corrupt, file: fileName, problem: "a tensor is stored under a key that is not text",
                                      remedy: CheckpointError.redownloadAdvice)
            }
            result.append((name, reference))
        }
        guard !result.isEmpty else {
            let keys = dictionary.keys.prefix(8).compactMap { key -> String? in
                if case .string(let text) = key { return text } else { return nil }
            }
            throw CheckpointError(
                .unsupported, file: fileName,
                problem: "no tensors found (top-level keys: \(keys.isEmpty ? "none" : keys.joined(separator: ", ")))",
                remedy: "Save a state dict: torch.save(model.state_dict(), path)")
        }
        return result
    }

    /// Copies a (possibly strided or offset) tensor view into a contiguous row-major array.
    static func materialize(
        _ reference: TensorReference, name: String, storage: StorageBytes, fileName: String
    ) throws -> StateDict.Entry {
        func corrupt(_ problem: String) -> CheckpointError {
            CheckpointError(.corrupt, file: fileName, problem: "tensor `\(name)`: \(problem)", remedy: CheckpointError.redownloadAdvice)
        }
        guard reference.storage.elementType == storage.elementType else {
            throw corrupt("storage \(reference.storage.key) is \(storage.elementType.rawValue) here and \(reference.storage.elementType.rawValue) elsewhere")
        }
        guard let count = CheckpointFile.elementCount(reference.shape) else {
            throw corrupt("impossible shape \(reference.shape)")
        }
        let type = storage.elementType
        guard count > 0 else {
            return StateDict.Entry(tensor: Tensor(shape: reference.shape, data: []), elementType: type)
        }
        // The furthest element the view touches must lie inside the storage.
        var lastIndex = reference.storageOffset
        for (size, stride) in zip(reference.shape, reference.strides) {
            let (step, overflowStep) = (size - 1).multipliedReportingOverflow(by: stride)
            let (sum, overflowSum) = lastIndex.addingReportingOverflow(step)
            guard !overflowStep, !overflowSum else { throw corrupt("strides \(reference.strides) overflow") }
            lastIndex = sum
        }
        let available = reference.storage.elementCount
        guard lastIndex < available, available <= storage.elementCount - reference.storage.viewOffset else {
            throw corrupt("view (offset \(reference.storageOffset), shape \(reference.shape), strides \(reference.strides)) reaches element \(lastIndex) of a storage with \(min(available, storage.elementCount))")
        }
        // Zero strides could make a tiny file describe billions of elements; state dicts never
        // hold such overlapping (expanded) views.
        guard count <= available else {
            throw CheckpointError(
                .unsupported, file: fileName,
                problem: "tensor `\(name)`: \(count) elements overlap in a storage of \(available) (an expanded view)",
                remedy: "Call .contiguous() on the tensor before saving")
        }
        let base = storage.start + reference.storage.viewOffset * ElementCodec.byteWidth(type)
        var contiguousStride = 1
        var isContiguous = true
        for (size, stride) in zip(reference.shape, reference.strides).reversed() {
            if size != 1 && stride != contiguousStride { isContiguous = false }
            contiguousStride *= size
        }
        let values: [Float]
        if isContiguous {
            values = ElementCodec.decodeContiguous(
                type, bytes: storage.bytes, base: base + reference.storageOffset * ElementCodec.byteWidth(type), count: count)
        } else {
            values = ElementCodec.decode(type, bytes: storage.bytes, base: base, elementIndices: stridedIndices(reference))
        }
        return StateDict.Entry(tensor: Tensor(shape: reference.shape, data: values), elementType: type)
    }

    /// Storage indices of a view's elements in row-major order (an odometer over the shape).
    static func stridedIndices(_ reference: TensorReference) -> [Int] {
        let shape = reference.shape
        let count = shape.reduce(1, *)
        var indices: [Int] = []
        indices.reserveCapacity(count)
        var position = [Int](repeating: 0, count: shape.count)
        var index = reference.storageOffset
        for _ in 0..<count {
            indices.append(index)
            var axis = shape.count - 1
            while axis >= 0 {
                position[axis] += 1
                index += reference.strides[axis]
                if position[axis] < shape[axis] { break }
                index -= reference.strides[axis] * shape[axis]
                position[axis] = 0
                axis -= 1
            }
        }
        return indices
    }

    static func assemble(
        _ references: [(String, TensorReference)], storages: [String: StorageBytes],
        metadata: [String: String], format: Checkpoint.Format, fileName: String
    ) throws -> Checkpoint {
        // Many tensors may view one storage; together they must not decode to far more than
        // the storages hold, or a small file could name one storage a million times.
        let stored = storages.values.reduce(0) { $0 + $1.elementCount }
        let limit = CheckpointLimits.maximumDecodedElements(storedElements: stored)
        var decoded = 0
        for (name, reference) in references {
            // A view larger than its storage is refused by `materialize`, with its own message.
            let count = min(CheckpointFile.elementCount(reference.shape) ?? Int.max, reference.storage.elementCount)
            decoded = decoded.addingReportingOverflow(count).overflow ? Int.max : decoded + count
            guard decoded <= limit else {
                throw CheckpointError(
                    .unsupported, file: fileName,
                    problem: "tensor `\(name)` brings the tensors to more than \(limit) elements, over \(CheckpointLimits.sharedStorageFactor) times the \(stored) their storages hold",
                    remedy: "Save each tensor once: torch.save({k: v.clone() for k, v in state_dict.items()}, path)")
            }
        }
        var dict = StateDict()
        for (name, reference) in references {
            guard let storage = storages[reference.storage.key] else {
                throw CheckpointError(.corrupt, file: fileName,
                                      problem: "tensor `\(name)` refers to storage \(reference.storage.key), which the file does not contain",
                                      remedy: CheckpointError.redownloadAdvice)
            }
            dict[name] = try materialize(reference, name: name, storage: storage, fileName: fileName)
        }
        return Checkpoint(stateDict: dict, metadata: metadata, format: format)
    }

    /// The storages that the tensors need, each once, by key.
    static func neededStorages(_ references: [(String, TensorReference)]) -> [String: StorageReference] {
        rootStorages(references.map(\.1.storage))
    }

    /// Every storage the pickle mentions anywhere (optimizer state included), by key.
    static func allStorages(in unpickler: Unpickler) -> [String: StorageReference] {
        rootStorages(unpickler.objects.compactMap { object in
            if case .storage(let reference) = object { return reference } else { return nil }
        })
    }

    /// Whole storages from possibly windowed references: a view's count is only its window.
    private static func rootStorages(_ references: [StorageReference]) -> [String: StorageReference] {
        var roots: [String: StorageReference] = [:]
        for reference in references {
            var root = reference
            root.elementCount += root.viewOffset
            root.viewOffset = 0
            if let known = roots[root.key], known.elementCount >= root.elementCount { continue }
            roots[root.key] = root
        }
        return roots
    }
}

/// The format of `torch.save` before 1.6: five concatenated pickles (magic number, protocol
/// version, system info, the object, the storage keys) then each storage as an int64 element count
/// followed by its raw little-endian elements.
enum LegacyTorchReader {
    /// 0x1950a86a20f9469cfc6c, little-endian, as LONG1 writes it.
    static let magicNumber: [UInt8] = [0x6C, 0xFC, 0x9C, 0x46, 0xF9, 0x20, 0x6A, 0xA8, 0x50, 0x19]
    static let protocolVersion = 1001

    static func read(_ bytes: [UInt8], fileName: String) throws -> Checkpoint {
        func corrupt(_ problem: String) -> CheckpointError {
            CheckpointError(.corrupt, file: fileName, problem: problem, remedy: CheckpointError.redownloadAdvice)
        }
        var header = Unpickler(bytes: bytes, fileName: fileName)
        guard try header.load() == .wideInt(magicNumber) else {
            throw corrupt("not a torch checkpoint: the leading magic number is wrong")
        }
        var versionPickle = Unpickler(bytes: bytes, fileName: fileName, start: header.position)
        guard case .int(let version) = try versionPickle.load(), version == protocolVersion else {
            throw CheckpointError(.unsupported, file: fileName, problem: "legacy torch protocol version is not \(protocolVersion)",
                                  remedy: "Re-save the checkpoint with a current torch.save")
        }
        var systemInfo = Unpickler(bytes: bytes, fileName: fileName, start: versionPickle.position)
        let info = try systemInfo.load()
        if case .dict(let table)? = systemInfo.object(info), table.value(for: "little_endian") == .bool(false) {
            throw CheckpointError(.unsupported, file: fileName, problem: "the checkpoint was written on a big-endian machine",
                                  remedy: "Re-save it on a little-endian machine")
        }

        var main = Unpickler(bytes: bytes, fileName: fileName, start: systemInfo.position)
        let root = try main.load()
        let (dictionary, metadata) = try TorchStateDictAssembler.locateStateDict(root, in: main, fileName: fileName)
        let references = try TorchStateDictAssembler.tensorReferences(dictionary, in: main, fileName: fileName)
        let needed = TorchStateDictAssembler.neededStorages(references)
        let mentioned = TorchStateDictAssembler.allStorages(in: main)

        var keyList = Unpickler(bytes: bytes, fileName: fileName, start: main.position)
        let keysValue = try keyList.load()
        guard case .list(let keyValues)? = keyList.object(keysValue) else {
            throw corrupt("the storage key list is not a list")
        }
        // Storages follow in the order of the key list, each as an element count and raw data.
        var reader = ByteReader(bytes: bytes, fileName: fileName, start: keyList.position)
        var storages: [String: StorageBytes] = [:]
        for keyValue in keyValues {
            guard case .string(let key) = keyValue else { throw corrupt("a storage key is not text") }
            guard let reference = mentioned[key] else {
                throw corrupt("storage \(key) is saved but nothing in the pickle describes its element type")
            }
            let count = try reader.int64LittleEndian("element count of storage \(key)")
            let width = ElementCodec.byteWidth(reference.elementType)
            guard count >= 0, count <= Int64(reader.remaining / width) else {
                throw CheckpointError(
                    .truncated, file: fileName,
                    problem: "truncated: storage \(key) needs \(count) x \(width) bytes at offset \(reader.position), file has \(reader.remaining) left",
                    remedy: CheckpointError.redownloadAdvice)
            }
            let range = try reader.range(Int(count) * width, what: "storage \(key)")
            // Storages outside the state dict (optimizer buffers) are skipped, not decoded.
            if needed[key] != nil {
                storages[key] = StorageBytes(bytes: bytes, start: range.lowerBound, elementCount: Int(count), elementType: reference.elementType)
            }
        }
        return try TorchStateDictAssembler.assemble(
            references, storages: storages, metadata: metadata, format: .legacyPickle, fileName: fileName)
    }
}

/// The format of `torch.save` since 1.6: a zip holding `<archive>/data.pkl` and each storage as
/// the raw little-endian file `<archive>/data/<key>`.
enum TorchZipReader {
    static let maximumExpansion = CheckpointLimits.maximumZipExpansion
    static let maximumPickleBytes = CheckpointLimits.maximumPickleBytes

    /// Reads the zip at `url`. Archives are always opened as files: ZIPFoundation's in-memory
    /// archives (`Archive(data:)`) trap on offsets past the end of the data, which damaged files
    /// have (found by fuzzing; see docs/fuzzing.md), while its file archives report an error.
    static func read(url: URL, fileName: String) throws -> Checkpoint {
        func corrupt(_ problem: String) -> CheckpointError {
            CheckpointError(.corrupt, file: fileName, problem: problem, remedy: CheckpointError.redownloadAdvice)
        }
        let archive: Archive
        do {
            archive = try Archive(url: url, accessMode: .read)
        } catch {
            throw corrupt("not a readable zip archive (\(error))")
        }
        // One pass over the central directory; `archive[path]` would rescan it for every storage.
        var entries: [String: Entry] = [:]
        for entry in archive where entry.type == .file { entries[entry.path] = entry }
        let pickleEntry = entries.keys.filter { $0.hasSuffix("data.pkl") }
            .min { ($0.count, $0) < ($1.count, $1) }
            .flatMap { entries[$0] }
        guard let pickleEntry else {
            throw CheckpointError(.unsupported, file: fileName, problem: "zip archive has no data.pkl, so it is not a torch.save file",
                                  remedy: "Expected a file written by torch.save")
        }
        let prefix = String(pickleEntry.path.dropLast("data.pkl".count))
        if let order = entries[prefix + "byteorder"],
           let text = try? String(decoding: extract(order, from: archive, url: url, limit: 16, fileName: fileName), as: UTF8.self),
           text.trimmingCharacters(in: .whitespacesAndNewlines) == "big" {
            throw CheckpointError(.unsupported, file: fileName, problem: "the checkpoint stores big-endian data",
                                  remedy: "Re-save it on a little-endian machine")
        }
        let pickleBytes = try extract(pickleEntry, from: archive, url: url, limit: maximumPickleBytes, fileName: fileName)
        var unpickler = Unpickler(bytes: pickleBytes, fileName: fileName)
        let root = try unpickler.load()
        let (dictionary, metadata) = try TorchStateDictAssembler.locateStateDict(root, in: unpickler, fileName: fileName)
        let references = try TorchStateDictAssembler.tensorReferences(dictionary, in: unpickler, fileName: fileName)

        var storages: [String: StorageBytes] = [:]
        for (key, reference) in TorchStateDictAssembler.neededStorages(references) {
            let path = prefix + "data/" + key
            guard let entry = entries[path] else {
                throw corrupt("storage \(key) is missing from the archive (expected \(path))")
            }
            let width = ElementCodec.byteWidth(reference.elementType)
            let (needed, overflow) = reference.elementCount.multipliedReportingOverflow(by: width)
            guard !overflow, entry.uncompressedSize >= UInt64(needed) else {
                throw CheckpointError(
                    .truncated, file: fileName,
                    problem: "truncated: storage \(key) needs \(reference.elementCount) x \(width) bytes, the archive holds \(entry.uncompressedSize)",
                    remedy: CheckpointError.redownloadAdvice)
            }
            let bytes = try extract(entry, from: archive, url: url, limit: UInt64(needed), fileName: fileName)
            guard bytes.count >= needed else {
                throw corrupt("storage \(key) decompresses to \(bytes.count) bytes, fewer than the \(needed) it needs")
            }
            storages[key] = StorageBytes(bytes: bytes, start: 0, elementCount: reference.elementCount, elementType: reference.elementType)
        }
        return try TorchStateDictAssembler.assemble(
            references, storages: storages, metadata: metadata, format: .torchZip, fileName: fileName)
    }

    /// An entry's bytes, refusing entries that claim more than `limit` bytes or more than their
    /// compressed size could expand to, and stopping if decompression exceeds the claim.
    static func extract(_ entry: Entry, from archive: Archive, url: URL, limit: UInt64, fileName: String) throws -> [UInt8] {
        let claimed = entry.uncompressedSize
        let (expansionLimit, overflow) = entry.compressedSize.multipliedReportingOverflow(by: maximumExpansion)
        guard claimed <= limit, overflow || claimed <= expansionLimit + 1024 else {
            throw CheckpointError(
                .corrupt, file: fileName,
                problem: "zip entry \(entry.path) claims \(claimed) bytes, more than expected (\(limit)) or than its \(entry.compressedSize) compressed bytes allow",
                remedy: CheckpointError.redownloadAdvice)
        }
        if entry.isCompressed {
            return try DeflatedZipEntry.read(path: entry.path, compressedSize: entry.compressedSize, limit: claimed,
                                             checksum: entry.checksum, from: url, fileName: fileName)
        }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(min(Int(claimed), CheckpointLimits.maximumZipReservation))
        do {
            _ = try archive.extract(entry) { chunk in
                guard UInt64(bytes.count + chunk.count) <= claimed else {
                    throw CheckpointError(.corrupt, file: fileName, problem: "zip entry \(entry.path) decompresses past its declared size",
                                          remedy: CheckpointError.redownloadAdvice)
                }
                bytes.append(contentsOf: chunk)
            }
        } catch let error as CheckpointError {
            throw error
        } catch {
            throw CheckpointError(.corrupt, file: fileName, problem: "zip entry \(entry.path) cannot be extracted (\(error))",
                                  remedy: CheckpointError.redownloadAdvice)
        }
        return bytes
    }
}
