import Foundation
import ONNX

/// The operators the importer evaluates at load when every input is known: the shape
/// arithmetic of real exports (a TensorFlow-style "same" padding alone is 20 nodes of Shape,
/// Gather, Sub, ConstantOfShape, Concat, Reshape, Slice, Transpose and Cast), and Constant.
/// Each is written for tensors of any rank, following the ONNX operator specification.
enum ONNXFolding {
    /// A node the importer cannot take; the importer adds the file and the node.
    struct Problem: Error {
        var problem: String
        var remedy: String?

        init(_ problem: String, remedy: String? = nil) {
            self.problem = problem
            self.remedy = remedy
        }
    }

    /// The most elements a tensor computed at load may have: shape arithmetic needs a handful,
    /// and a hostile file must not make the importer allocate without bound.
    static let elementLimit = 1 << 26

    /// The element count of `shape`, refusing negative dimensions and counts past `elementLimit`
    /// (checked as it multiplies, so no product overflows).
    static func elementCount(_ shape: [Int], _ what: String, limit: Int = elementLimit) throws -> Int {
        var count = 1
        for dim in shape {
            guard dim >= 0 else { throw Problem("\(what) has a negative dimension in \(shape)") }
            let (product, overflow) = count.multipliedReportingOverflow(by: dim)
            guard !overflow, product <= limit else {
                throw Problem("\(what) would have more than \(limit) elements (shape \(shape))")
            }
            count = product
        }
        return count
    }

    static let operators: Set<String> = [
        "Constant", "Shape", "Gather", "Slice", "Concat", "Cast", "Unsqueeze", "Squeeze", "ConstantOfShape",
        "Transpose", "Reshape", "Add", "Sub", "Mul", "Div", "Identity", "Dropout", "Floor", "Ceil", "Sqrt",
    ]

    /// The outputs of `node` on known inputs (nil for an omitted optional input).
    static func evaluate(_ node: Onnx_NodeProto, _ inputs: [ONNXConstant?], attributes: ONNXAttributes,
                         opset: Int) throws -> ONNXConstant {
        func input(_ index: Int) throws -> ONNXConstant {
            guard index < inputs.count, let value = inputs[index] else {
                throw Problem("input \(index + 1) is missing")
            }
            return value
        }
        switch node.opType {
        case "Constant":
            return try constant(attributes)
        case "Identity", "Dropout":
            return try input(0)
        case "Shape":
            return shape(of: try input(0).shape.map(Double.init), attributes: attributes)
        case "Gather":
            return try gather(try input(0), indices: try input(1), axis: attributes.int("axis") ?? 0)
        case "Slice":
            return try slice(try input(0), starts: try input(1).integers("Slice starts"), ends: try input(2).integers("Slice ends"),
                             axes: try inputs.count > 3 ? inputs[3]?.integers("Slice axes") : nil,
                             steps: try inputs.count > 4 ? inputs[4]?.integers("Slice steps") : nil)
        case "Concat":
            guard let axis = attributes.int("axis") else { throw Problem("Concat needs an axis") }
            return try concat(try inputs.indices.map { try input($0) }, axis: axis)
        case "Cast":
            guard let to = attributes.int("to") else { throw Problem("Cast needs a target type 'to'") }
            return cast(try input(0), to: to)
        case "Unsqueeze":
            let axes = opset >= 13 ? try input(1).integers("Unsqueeze axes") : attributes.ints("axes") ?? []
            return try unsqueeze(try input(0), axes: axes)
        case "Squeeze":
            let axes = opset >= 13 ? try inputs.count > 1 ? inputs[1]?.integers("Squeeze axes") : nil : attributes.ints("axes")
            return try squeeze(try input(0), axes: axes)
        case "ConstantOfShape":
            let shape = try input(0).integers("the shape of ConstantOfShape")
            let count = try elementCount(shape, "ConstantOfShape")
            let fill = try attributes.tensor("value").map { try ONNXTensorReader.read($0) } ?? ONNXConstant(shape: [1], values: [0], isInteger: false)
            return ONNXConstant(shape: shape, values: [Double](repeating: try fill.scalar("ConstantOfShape's value"), count: count),
                                isInteger: fill.isInteger)
        case "Transpose":
            let value = try input(0)
            let permutation = attributes.ints("perm") ?? Array(value.shape.indices.reversed())
            return try transpose(value, permutation: permutation)
        case "Reshape":
            let value = try input(0)
            let shape = try reshapedDimensions(value.shape, target: try input(1).integers("the target shape of Reshape"),
                                               allowZero: attributes.int("allowzero") == 1)
            return ONNXConstant(shape: shape, values: value.values, isInteger: value.isInteger)
        case "Add": return try broadcast(try input(0), try input(1)) { $0 + $1 }
        case "Sub": return try broadcast(try input(0), try input(1)) { $0 - $1 }
        case "Mul": return try broadcast(try input(0), try input(1)) { $0 * $1 }
        case "Div":
            let a = try input(0), b = try input(1)
            // Integer division truncates, as in C.
            return try broadcast(a, b) { a.isInteger && b.isInteger ? ($0 / $1).rounded(.towardZero) : $0 / $1 }
        case "Floor": return map(try input(0)) { $0.rounded(.down) }
        case "Ceil": return map(try input(0)) { $0.rounded(.up) }
        case "Sqrt": return map(try input(0)) { $0.squareRoot() }
        default:
            throw Problem("\(node.opType) is not evaluated at load")
        }
    }

    static func constant(_ attributes: ONNXAttributes) throws -> ONNXConstant {
        if let tensor = attributes.tensor("value") { return try ONNXTensorReader.read(tensor) }
        if let value = attributes.float("value_float") { return ONNXConstant(shape: [], values: [Double(value)], isInteger: false) }
        if let values = attributes.floats("value_floats") { return ONNXConstant(shape: [values.count], values: values.map(Double.init), isInteger: false) }
        if let value = attributes.int("value_int") { return ONNXConstant(integers: [value], shape: []) }
        if let values = attributes.ints("value_ints") { return ONNXConstant(integers: values) }
        throw Problem("Constant has no value qsh reads (value, value_float(s), value_int(s))")
    }

    /// Shape with opset 15's optional `start` and `end`.
    static func shape(of dims: [Double], attributes: ONNXAttributes) -> ONNXConstant {
        let rank = dims.count
        func clampAxis(_ axis: Int) -> Int { min(max(axis < 0 ? axis + rank : axis, 0), rank) }
        let start = clampAxis(attributes.int("start") ?? 0)
        let end = clampAxis(attributes.int("end") ?? rank)
        let part = start < end ? Array(dims[start ..< end]) : []
        return ONNXConstant(shape: [part.count], values: part, isInteger: true)
    }

    static func map(_ value: ONNXConstant, _ f: (Double) -> Double) -> ONNXConstant {
        ONNXConstant(shape: value.shape, values: value.values.map(f), isInteger: value.isInteger)
    }

    static func cast(_ value: ONNXConstant, to type: Int) -> ONNXConstant {
        switch Onnx_TensorProto.DataType(rawValue: type) {
        case .float?, .double?, .float16?, .bfloat16?:
            return ONNXConstant(shape: value.shape, values: value.values, isInteger: false)
        case .bool?:
            return ONNXConstant(shape: value.shape, values: value.values.map { $0 == 0 ? 0 : 1 }, isInteger: true)
        default:
            // Float to integer truncates toward zero; the batch symbol stays what it is.
            return ONNXConstant(shape: value.shape, values: value.values.map { $0.isNaN ? $0 : $0.rounded(.towardZero) }, isInteger: true)
        }
    }

    static func normalizedAxis(_ axis: Int, rank: Int, _ what: String) throws -> Int {
        let normalized = axis < 0 ? axis + rank : axis
        guard normalized >= 0, normalized < rank else { throw Problem("\(what) axis \(axis) is outside rank \(rank)") }
        return normalized
    }

    static func gather(_ data: ONNXConstant, indices: ONNXConstant, axis rawAxis: Int) throws -> ONNXConstant {
        let axis = try normalizedAxis(rawAxis, rank: data.shape.count, "Gather")
        let size = data.shape[axis]
        let picks = try indices.integers("Gather indices").map { index -> Int in
            let wrapped = index < 0 ? index + size : index
            guard wrapped >= 0, wrapped < size else { throw Problem("Gather index \(index) is outside 0..<\(size)") }
            return wrapped
        }
        let outer = data.shape[..<axis].reduce(1, *)
        let inner = data.shape[(axis + 1)...].reduce(1, *)
        _ = try elementCount(Array(data.shape[..<axis]) + indices.shape + Array(data.shape[(axis + 1)...]), "Gather")
        var values: [Double] = []
        values.reserveCapacity(outer * picks.count * inner)
        for o in 0 ..< outer {
            for pick in picks {
                let base = (o * size + pick) * inner
                values.append(contentsOf: data.values[base ..< base + inner])
            }
        }
        return ONNXConstant(shape: Array(data.shape[..<axis]) + indices.shape + Array(data.shape[(axis + 1)...]),
                            values: values, isInteger: data.isInteger)
    }

    static func slice(_ data: ONNXConstant, starts: [Int], ends: [Int], axes requestedAxes: [Int]?, steps requestedSteps: [Int]?) throws -> ONNXConstant {
        let rank = data.shape.count
        let axes = try (requestedAxes ?? Array(0 ..< starts.count)).map { try normalizedAxis($0, rank: rank, "Slice") }
        let steps = requestedSteps ?? [Int](repeating: 1, count: starts.count)
        guard starts.count == ends.count, axes.count == starts.count, steps.count == starts.count, Set(axes).count == axes.count else {
            throw Problem("Slice has \(starts.count) starts, \(ends.count) ends, \(axes.count) axes and \(steps.count) steps")
        }
        // Per axis: the selected indices, as the specification clamps them.
        var selected = data.shape.map { Array(0 ..< $0) }
        for (k, axis) in axes.enumerated() {
            let size = data.shape[axis], step = steps[k]
            guard step != 0 else { throw Problem("Slice step is 0") }
            func clamp(_ value: Int, _ low: Int, _ high: Int) -> Int {
                let resolved = value < 0 ? value + size : value
                return min(max(resolved, low), high)
            }
            var indices: [Int] = []
            if step > 0 {
                var i = clamp(starts[k], 0, size)
                let end = clamp(ends[k], 0, size)
                while i < end { indices.append(i); i += step }
            } else {
                var i = clamp(starts[k], 0, size - 1)
                let end = clamp(ends[k], -1, size - 1)
                while i > end { indices.append(i); i += step }
            }
            selected[axis] = indices
        }
        return gatherAll(data, selected)
    }

    /// The sub-tensor with, on each axis, the listed indices in order.
    static func gatherAll(_ data: ONNXConstant, _ selected: [[Int]]) -> ONNXConstant {
        let strides = ONNXConstant.strides(data.shape)
        let shape = selected.map(\.count)
        let total = shape.reduce(1, *)  // at most the data's own count
        var values = [Double]()
        values.reserveCapacity(total)
        var position = [Int](repeating: 0, count: shape.count)
        for _ in 0 ..< total {
            var offset = 0
            for axis in shape.indices { offset += selected[axis][position[axis]] * strides[axis] }
            values.append(data.values[offset])
            var axis = shape.count - 1
            while axis >= 0 {
                position[axis] += 1
                if position[axis] < shape[axis] { break }
                position[axis] = 0
                axis -= 1
            }
        }
        return ONNXConstant(shape: shape, values: values, isInteger: data.isInteger)
    }

    static func concat(_ parts: [ONNXConstant], axis rawAxis: Int) throws -> ONNXConstant {
        guard let first = parts.first else { throw Problem("Concat has no inputs") }
        let rank = first.shape.count
        let axis = try normalizedAxis(rawAxis, rank: max(rank, 1), "Concat")
        for part in parts where part.shape.count != rank || part.shape.enumerated().contains(where: { $0.offset != axis && $0.element != first.shape[$0.offset] }) {
            throw Problem("Concat cannot join \(parts.map { "\($0.shape)" }.joined(separator: " and ")) on axis \(axis)")
        }
        if rank == 0 { return ONNXConstant(shape: [parts.count], values: parts.flatMap(\.values), isInteger: first.isInteger) }
        let outer = first.shape[..<axis].reduce(1, *)
        var values: [Double] = []
        for o in 0 ..< outer {
            for part in parts {
                let block = part.shape[axis...].reduce(1, *)
                values.append(contentsOf: part.values[o * block ..< (o + 1) * block])
            }
        }
        var shape = first.shape
        shape[axis] = parts.reduce(0) { $0 + $1.shape[axis] }
        return ONNXConstant(shape: shape, values: values, isInteger: parts.allSatisfy(\.isInteger))
    }

    static func unsqueeze(_ value: ONNXConstant, axes: [Int]) throws -> ONNXConstant {
        guard axes.count <= 64 else { throw Problem("Unsqueeze adds \(axes.count) axes") }
        let rank = value.shape.count + axes.count
        let normalized = try Set(axes.map { try normalizedAxis($0, rank: rank, "Unsqueeze") })
        var shape: [Int] = []
        var source = value.shape.makeIterator()
        for axis in 0 ..< rank { shape.append(normalized.contains(axis) ? 1 : source.next() ?? 1) }
        return ONNXConstant(shape: shape, values: value.values, isInteger: value.isInteger)
    }

    static func squeeze(_ value: ONNXConstant, axes: [Int]?) throws -> ONNXConstant {
        let rank = value.shape.count
        let drop = try Set((axes ?? value.shape.indices.filter { value.shape[$0] == 1 }).map { try normalizedAxis($0, rank: rank, "Squeeze") })
        for axis in drop where value.shape[axis] != 1 { throw Problem("Squeeze axis \(axis) has size \(value.shape[axis])") }
        let shape = value.shape.indices.filter { !drop.contains($0) }.map { value.shape[$0] }
        return ONNXConstant(shape: shape, values: value.values, isInteger: value.isInteger)
    }

    static func transpose(_ value: ONNXConstant, permutation: [Int]) throws -> ONNXConstant {
        guard permutation.sorted() == Array(value.shape.indices) else {
            throw Problem("Transpose permutation \(permutation) does not fit rank \(value.shape.count)")
        }
        let strides = ONNXConstant.strides(value.shape)
        let shape = permutation.map { value.shape[$0] }
        var values: [Double] = []
        values.reserveCapacity(value.count)
        var position = [Int](repeating: 0, count: shape.count)
        for _ in 0 ..< value.count {
            var offset = 0
            for axis in shape.indices { offset += position[axis] * strides[permutation[axis]] }
            values.append(value.values[offset])
            var axis = shape.count - 1
            while axis >= 0 {
                position[axis] += 1
                if position[axis] < shape[axis] { break }
                position[axis] = 0
                axis -= 1
            }
        }
        return ONNXConstant(shape: shape, values: values, isInteger: value.isInteger)
    }

    /// Reshape's target with 0 (copy the input's dimension unless `allowZero`) and -1 (infer)
    /// resolved.
    static func reshapedDimensions(_ input: [Int], target: [Int], allowZero: Bool) throws -> [Int] {
        var shape = target
        guard target.count <= 64 else { throw Problem("Reshape target has rank \(target.count)") }
        for (axis, dim) in target.enumerated() where dim == 0 && !allowZero {
            guard axis < input.count else { throw Problem("Reshape copies dimension \(axis) of a rank-\(input.count) input") }
            shape[axis] = input[axis]
        }
        let count = input.reduce(1, *)
        let inferred = shape.indices.filter { shape[$0] == -1 }
        guard inferred.count <= 1, shape.allSatisfy({ $0 >= -1 }) else { throw Problem("Reshape target \(target) is not valid") }
        if let axis = inferred.first {
            let known = try elementCount(shape.enumerated().filter { $0.offset != axis }.map(\.element), "Reshape")
            guard known > 0, count % known == 0 else { throw Problem("Reshape cannot fit \(count) elements into \(target)") }
            shape[axis] = count / known
        }
        guard try elementCount(shape, "Reshape") == count else { throw Problem("Reshape cannot fit \(input) into \(target)") }
        return shape
    }

    /// Elementwise `f` with NumPy broadcasting.
    static func broadcast(_ a: ONNXConstant, _ b: ONNXConstant, _ f: (Double, Double) -> Double) throws -> ONNXConstant {
        let rank = max(a.shape.count, b.shape.count)
        let shapeA = [Int](repeating: 1, count: rank - a.shape.count) + a.shape
        let shapeB = [Int](repeating: 1, count: rank - b.shape.count) + b.shape
        var shape: [Int] = []
        for axis in 0 ..< rank {
            guard shapeA[axis] == shapeB[axis] || shapeA[axis] == 1 || shapeB[axis] == 1 else {
                throw Problem("cannot broadcast \(a.shape) with \(b.shape)")
            }
            shape.append(shapeA[axis] == 1 ? shapeB[axis] : shapeA[axis])
        }
        let stridesA = ONNXConstant.strides(shapeA), stridesB = ONNXConstant.strides(shapeB)
        let total = try elementCount(shape, "the broadcast result")
        var values = [Double]()
        values.reserveCapacity(total)
        var position = [Int](repeating: 0, count: rank)
        for _ in 0 ..< total {
            var offsetA = 0, offsetB = 0
            for axis in 0 ..< rank {
                if shapeA[axis] != 1 { offsetA += position[axis] * stridesA[axis] }
                if shapeB[axis] != 1 { offsetB += position[axis] * stridesB[axis] }
            }
            values.append(f(a.values[offsetA], b.values[offsetB]))
            var axis = rank - 1
            while axis >= 0 {
                position[axis] += 1
                if position[axis] < shape[axis] { break }
                position[axis] = 0
                axis -= 1
            }
        }
        return ONNXConstant(shape: shape, values: values, isInteger: a.isInteger && b.isInteger)
    }
}

/// A node's attributes by name.
struct ONNXAttributes {
    private var byName: [String: Onnx_AttributeProto] = [:]

    init(_ node: Onnx_NodeProto) {
        for attribute in node.attribute { byName[attribute.name] = attribute }
    }

    func int(_ name: String) -> Int? {
        guard let attribute = byName[name], attribute.type == .int || attribute.hasI else { return nil }
        return Int(clamping: attribute.i)
    }

    func ints(_ name: String) -> [Int]? {
        guard let attribute = byName[name], attribute.type == .ints || !attribute.ints.isEmpty else { return nil }
        return attribute.ints.map { Int(clamping: $0) }
    }

    func float(_ name: String) -> Float? {
        guard let attribute = byName[name], attribute.type == .float || attribute.hasF else { return nil }
        return attribute.f
    }

    func floats(_ name: String) -> [Float]? {
        guard let attribute = byName[name], attribute.type == .floats || !attribute.floats.isEmpty else { return nil }
        return attribute.floats
    }

    func string(_ name: String) -> String? {
        guard let attribute = byName[name], attribute.type == .string || attribute.hasS else { return nil }
        return String(decoding: attribute.s, as: UTF8.self)
    }

    func tensor(_ name: String) -> Onnx_TensorProto? {
        guard let attribute = byName[name], attribute.type == .tensor || attribute.hasT else { return nil }
        return attribute.t
    }
}
