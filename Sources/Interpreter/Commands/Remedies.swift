import QuantOps

extension Prerequisite {
    /// What a recipe runs so that `command` (its words, e.g. `export onnx`) finds the model in
    /// this state. QuantOps names only the state; the commands that reach it are the shell's.
    public func remedy(for command: String) -> String {
        switch self {
        case .calibratedActivations: "run 'calibrate' before '\(command)'"
        case .activationQuantizers: "run 'quantize activations' first"
        case .foldedBatchNorms: "run 'fold bn' first"
        case .unfoldedBatchNorms: "run '\(command)' before 'fold bn'"
        case .floatWeights: "run '\(command)' before 'quantize weights'"
        case .floatActivations: "run '\(command)' before 'quantize activations'"
        }
    }
}
