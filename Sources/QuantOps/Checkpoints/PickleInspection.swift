/// What the unpickler built from one pickle, summarized so that checks from outside the module
/// (the fuzzing harness in Fuzz/) can test its invariants without the unpickler being public.
@_spi(Fuzzing)
public struct PickleInspection: Sendable, Equatable {
    /// Bytes read up to and including STOP.
    public var bytesConsumed: Int
    /// Containers, tensors and storages built; each opcode builds at most one.
    public var objectCount: Int
    /// References from the root or a container to a container that does not exist.
    public var danglingReferences: Int
    /// Tensors whose rank of shape and strides differ, or with a negative size, stride or offset,
    /// and storages with a negative size or a view outside them.
    public var malformedReferences: Int
    public var tensorCount: Int
    public var storageCount: Int
    /// The state dict's tensor names, when the root holds one; nil when it is refused.
    public var stateDictTensorNames: [String]?
    /// Tensors whose view reaches past the root storage that `neededStorages` merged for them.
    public var tensorsOutsideMergedStorage: Int

    /// Unpickles `bytes` as checkpoint pickles are read, then walks what was built.
    public static func inspect(_ bytes: [UInt8]) throws -> PickleInspection {
        var unpickler = Unpickler(bytes: bytes, fileName: "fuzz.pkl")
        let root = try unpickler.load()
        let objects = unpickler.objects
        func valid(_ value: PickleValue) -> Bool {
            if case .object(let index) = value { return objects.indices.contains(index) }
            return true
        }
        var summary = PickleInspection(
            bytesConsumed: unpickler.position, objectCount: objects.count, danglingReferences: valid(root) ? 0 : 1,
            malformedReferences: 0, tensorCount: 0, storageCount: 0, stateDictTensorNames: nil, tensorsOutsideMergedStorage: 0)
        func check(_ storage: StorageReference) -> Bool {
            storage.elementCount >= 0 && storage.viewOffset >= 0
        }
        for object in objects {
            switch object {
            case .tuple(let items), .list(let items):
                summary.danglingReferences += items.filter { !valid($0) }.count
            case .dict(let dictionary):
                summary.danglingReferences += (dictionary.keys + dictionary.values).filter { !valid($0) }.count
            case .tensor(let tensor):
                summary.tensorCount += 1
                if tensor.shape.count != tensor.strides.count || tensor.shape.contains(where: { $0 < 0 })
                    || tensor.strides.contains(where: { $0 < 0 }) || tensor.storageOffset < 0 || !check(tensor.storage) {
                    summary.malformedReferences += 1
                }
            case .storage(let storage):
                summary.storageCount += 1
                if !check(storage) { summary.malformedReferences += 1 }
            }
        }
        if let (dictionary, _) = try? TorchStateDictAssembler.locateStateDict(root, in: unpickler, fileName: "fuzz.pkl"),
           let references = try? TorchStateDictAssembler.tensorReferences(dictionary, in: unpickler, fileName: "fuzz.pkl") {
            summary.stateDictTensorNames = references.map(\.0)
            let merged = TorchStateDictAssembler.neededStorages(references)
            for (_, reference) in references {
                let storage = reference.storage
                guard let root = merged[storage.key],
                      storage.viewOffset.addingReportingOverflow(storage.elementCount).partialValue <= root.elementCount
                else {
                    summary.tensorsOutsideMergedStorage += 1
                    continue
                }
            }
        }
        return summary
    }
}
