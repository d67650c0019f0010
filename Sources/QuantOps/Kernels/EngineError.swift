/// A failure while running a model: names the node and says what does not fit.
public struct EngineError: Error, CustomStringConvertible, Equatable {
    public var node: String
    public var problem: String

    public init(node: String, problem: String) {
        self.node = node
        self.problem = problem
    }

    public var description: String { "node '\(node)': \(problem)" }
}

func describeShape(_ shape: [Int]) -> String {
    shape.map(String.init).joined(separator: "x")
}
