/// The tensors of a checkpoint by PyTorch key name, in the checkpoint's own order.
public struct StateDict: Sendable, Equatable {
    /// Element types we read and write back. Values are held as Float; integer tensors such as
    /// `num_batches_tracked` are exact in Float for the sizes that occur.
    public enum ElementType: String, Sendable {
        case float32 = "F32"
        case float64 = "F64"
        case float16 = "F16"
        case bfloat16 = "BF16"
        case int64 = "I64"
        case int32 = "I32"
        case int16 = "I16"
        case int8 = "I8"
        case uint8 = "U8"
        case bool = "BOOL"
    }

    public struct Entry: Sendable, Equatable {
        public var tensor: Tensor
        public var elementType: ElementType

        public init(tensor: Tensor, elementType: ElementType = .float32) {
            self.tensor = tensor
            self.elementType = elementType
        }
    }

    public private(set) var keys: [String] = []
    private var entries: [String: Entry] = [:]

    public init() {}

    public subscript(key: String) -> Entry? {
        get { entries[key] }
        set {
            if let newValue {
                if entries.updateValue(newValue, forKey: key) == nil { keys.append(key) }
            } else if entries.removeValue(forKey: key) != nil {
                keys.removeAll { $0 == key }
            }
        }
    }

    public var count: Int { keys.count }
}
