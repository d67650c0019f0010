import Foundation
import QuantOps

/// Commands that write the model for other runtimes.
enum ExportCommands {
    static var all: [CommandSpec] {
        [exportONNX]
    }

    static let exportONNX = CommandSpec(
        ["export", "onnx"], group: .model, summary: "Write the current model as ONNX (float, or QDQ when quantized)",
        help: """
            Opset 13; input 'input' (N x 3 x 32 x 32, normalized as the model expects, batch dynamic), output 'logits'; ONNX node names are the model's node names, and the normalization is stored in the metadata (key 'qsh', JSON). A float model is a plain graph. A quantized one is in QDQ form: integer weights with DequantizeLinear (per output channel on axis 0 for per-channel grids; ternary, binary and DoReFa weights as int8 codes on their grid), a QuantizeLinear/DequantizeLinear pair wherever qsh rounds an activation (uint8 asymmetric, int8 symmetric), int32 biases with scale S_w * S_in, logits float. Activations wider than 8 bits are written as the float operations qsh performs (Div, Clip, Round, Mul). Activation quantizers need 'calibrate' first. The file appears only when complete; nothing is written on an error. See docs/export.md.
            """,
        positionals: [Positional("file", .path, help: "the .onnx file to write")],
        examples: ["export onnx \"resnet20-w8a8.onnx\""]
    ) { invocation, session in
        let state = try session.requireModel(for: "export onnx")
        let path = try invocation.string("file")
        let details: [String: Any] = ["qsh_version": QshVersion.string, "origin": state.origin, "steps": state.steps]
        let summary = try ONNXExporter.write(state.model, to: URL(fileURLWithPath: path), producerVersion: QshVersion.string,
                                             details: details)
        var line = "exported \(summary.isQuantized ? "QDQ" : "float") ONNX (opset \(ONNXExporter.opsetVersion)) to \(path): \(summary.nodes) nodes"
        if summary.isQuantized {
            line += ", \(summary.integerWeightLayers) integer weight layers, \(summary.quantizedActivations) quantized activations"
            if summary.emulatedActivations > 0 { line += " (+\(summary.emulatedActivations) wider than 8 bits in float)" }
            line += ", \(summary.int32Biases) int32 biases"
            if summary.floatWeightLayers > 0 { line += ", \(summary.floatWeightLayers) float layers" }
        }
        line += String(format: ", %.2f MB", Double(summary.bytes) / 1_048_576)
        session.output.line(line)
    }
}
