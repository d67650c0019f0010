/// A failure while running a model: names the node and says what does not fit.
public struct EngineError: PrerequisiteFailure, Equatable {
    public var node: String
    public var problem: String
    public var unmet: Prerequisite?

    public init(node: String, problem: String, unmet: Prerequisite? = nil) {
        self.node = node
        self.problem = problem
        self.unmet = unmet
    }

    /// An activation quantizer was asked to round before calibration gave it a range.
    static func uncalibrated(_ quantizer: ActivationQuantizer, node: String) -> EngineError {
        EngineError(node: node, problem: "the \(quantizer.label) activation quantizer has no range yet", unmet: .calibratedActivations)
    }

    public var description: String { "node '\(node)': \(problem)" }
}

func describeShape(_ shape: [Int]) -> String {
    shape.map(String.init).joined(separator: "x")
}
