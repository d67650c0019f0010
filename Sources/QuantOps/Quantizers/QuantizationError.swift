/// Why a quantizer, a graph transform or a compensation step refused its input: names the
/// place (a layer, a node, a selector), the problem and, where there is one, the fix.
public struct QuantizationError: PrerequisiteFailure, Sendable, Equatable {
    /// The layer, node or argument at fault; nil when the message stands on its own.
    public var place: String?
    public var problem: String
    public var remedy: String?
    public var unmet: Prerequisite?

    public init(place: String? = nil, problem: String, remedy: String? = nil, unmet: Prerequisite? = nil) {
        self.place = place
        self.problem = problem
        self.remedy = remedy
        self.unmet = unmet
    }

    public var description: String {
        var text = place.map { "\($0): \(problem)" } ?? problem
        if let remedy { text += "; \(remedy)" }
        return text
    }

    /// The same error located at `place`, keeping an inner place as detail.
    func located(at outer: String) -> QuantizationError {
        QuantizationError(place: place.map { "\(outer) (\($0))" } ?? outer, problem: problem, remedy: remedy, unmet: unmet)
    }
}
