/// Which weight layers a recipe command acts on: `3`, `3..`, `..5`, `2..7`, lists of those,
/// `all`, and glob patterns such as `layer2.*` (`*`, `?`) matched against node names.
/// Layers are the conv and linear nodes, counted from 1 in execution order.
public enum LayerSelector: Sendable, Equatable {
    case index(Int)
    case range(lower: Int?, upper: Int?)
    case pattern(String)
    case all
    case list([LayerSelector])

    /// The selected layer numbers (from 1), sorted and without repeats.
    public func resolve(in model: Model) throws -> [Int] {
        let layerNodes = model.weightLayerNodes
        var selected = Set<Int>()
        try collect(into: &selected, names: layerNodes.map { model.nodes[$0].name }, modelName: model.name)
        return selected.sorted()
    }

    private func collect(into selected: inout Set<Int>, names: [String], modelName: String) throws {
        let count = names.count
        let available = "model \(modelName) has \(count) layers (1...\(count))"
        switch self {
        case .all:
            if count > 0 { selected.formUnion(1...count) }
        case .index(let number):
            guard number >= 1 else {
                throw QuantizationError(place: "layer \(number)", problem: "layers are counted from 1",
                                        remedy: "use 1...\(count)")
            }
            guard number <= count else {
                throw QuantizationError(place: "layer \(number)", problem: "out of range", remedy: available)
            }
            selected.insert(number)
        case .range(let lower, let upper):
            let text = "\(lower.map(String.init) ?? "")..\(upper.map(String.init) ?? "")"
            let first = lower ?? 1
            let last = upper ?? count
            guard first >= 1 else {
                throw QuantizationError(place: "layers \(text)", problem: "layers are counted from 1",
                                        remedy: "use 1...\(count)")
            }
            guard first <= last else {
                throw QuantizationError(place: "layers \(text)", problem: "the range is empty",
                                        remedy: lower != nil && upper == nil ? available
                                            : "write the smaller number first")
            }
            guard last <= count else {
                throw QuantizationError(place: "layers \(text)", problem: "out of range", remedy: available)
            }
            selected.formUnion(first...last)
        case .pattern(let pattern):
            let matches = names.indices.filter { Self.glob(pattern, matches: names[$0]) }
            guard !matches.isEmpty else {
                let closest = Self.closestNames(to: pattern, among: names, limit: 3)
                throw QuantizationError(
                    place: "layers \"\(pattern)\"", problem: "no layer name matches",
                    remedy: closest.isEmpty ? "the model has no weight layers"
                        : "closest names: " + closest.joined(separator: ", "))
            }
            selected.formUnion(matches.map { $0 + 1 })
        case .list(let items):
            for item in items { try item.collect(into: &selected, names: names, modelName: modelName) }
        }
    }

    /// Shell-style matching of the whole name: `*` any run of characters, `?` one character.
    public static func glob(_ pattern: String, matches name: String) -> Bool {
        let p = Array(pattern)
        let s = Array(name)
        var pi = 0
        var si = 0
        var starPattern = -1
        var starName = 0
        while si < s.count {
            if pi < p.count, p[pi] == "?" || p[pi] == s[si] {
                pi += 1
                si += 1
            } else if pi < p.count, p[pi] == "*" {
                starPattern = pi
                starName = si
                pi += 1
            } else if starPattern >= 0 {
                pi = starPattern + 1
                starName += 1
                si = starName
            } else {
                return false
            }
        }
        while pi < p.count, p[pi] == "*" { pi += 1 }
        return pi == p.count
    }

    /// Names nearest to the pattern's literal characters; a name's prefix counts too, so that
    /// `layer4.*` suggests `layer3...` rather than the shortest names.
    static func closestNames(to pattern: String, among names: [String], limit: Int) -> [String] {
        let literal = pattern.filter { $0 != "*" && $0 != "?" }
        func distance(_ name: String) -> Int {
            Swift.min(editDistance(literal, name), editDistance(literal, String(name.prefix(literal.count))))
        }
        return names.enumerated()
            .map { (name: $0.element, distance: distance($0.element), order: $0.offset) }
            .sorted { ($0.distance, $0.order) < ($1.distance, $1.order) }
            .prefix(limit)
            .map(\.name)
    }

    static func editDistance(_ a: String, _ b: String) -> Int {
        let x = Array(a)
        let y = Array(b)
        guard !x.isEmpty else { return y.count }
        guard !y.isEmpty else { return x.count }
        var previous = Array(0...y.count)
        var current = [Int](repeating: 0, count: y.count + 1)
        for i in 1...x.count {
            current[0] = i
            for j in 1...y.count {
                current[j] = Swift.min(previous[j] + 1, current[j - 1] + 1,
                                       previous[j - 1] + (x[i - 1] == y[j - 1] ? 0 : 1))
            }
            swap(&previous, &current)
        }
        return previous[y.count]
    }
}
