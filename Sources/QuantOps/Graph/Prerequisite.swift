/// A state the model must be in for an operation, which an earlier step brings about. Errors
/// name the prerequisite they miss rather than the step: the library does not know how the program
/// built on it asks for steps, so the program adds the remedy (qsh names its commands).
public enum Prerequisite: String, Sendable, Equatable, CaseIterable {
    /// Every activation quantizer has a range (from calibration).
    case calibratedActivations
    /// The model has activation quantizers.
    case activationQuantizers
    /// Batch norms are folded into the layers before them.
    case foldedBatchNorms
    /// Batch norms are still nodes of their own, not yet folded.
    case unfoldedBatchNorms
    /// No weights are quantized yet.
    case floatWeights
    /// No activations are quantized yet.
    case floatActivations
}

/// An error that can say which prerequisite its operation missed.
public protocol PrerequisiteFailure: Error, CustomStringConvertible {
    /// The state the model lacked, when that is what went wrong; the description leaves the
    /// remedy out then.
    var unmet: Prerequisite? { get }
}
