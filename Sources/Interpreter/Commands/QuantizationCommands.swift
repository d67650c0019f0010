import Foundation
import QuantOps

/// Commands that change a model's weights: folding, quantizers and compensation.
enum QuantizationCommands {
    static var all: [CommandSpec] {
        [foldBatchNorm, ternary, binary, quantizeLayers, compensateDFMPC, mixedDFMPC]
    }

    static let foldBatchNorm = CommandSpec(
        ["fold", "bn"], group: .quantization, summary: "Fold batch norms into the preceding conv layers",
        help: "W' = W * gamma/sigma per output channel, b' = beta + gamma/sigma * (b - mu). Exact: the logits do not change beyond float rounding. The BN nodes disappear, so 'recalibrate bn' no longer applies.",
        examples: ["fold bn"]
    ) { invocation, session in
        var model = try session.requireModel(for: "fold bn").model
        let folded = try ModelTransforms.foldBatchNorm(&model)
        guard folded > 0 else {
            session.output.line("no batch norm to fold")
            return
        }
        session.commit(model, step: "fold bn")
        session.output.line("folded \(folded) batch norms into their conv layers")
    }

    static func weightQuantizerCommand(_ word: String, quantizer: WeightQuantizer, summary: String, help: String) -> CommandSpec {
        CommandSpec(
            [word], group: .quantization, summary: summary, help: help,
            positionals: [Positional("layers", keyword: "layer", .layers, help: "which layers, e.g. 3.., 2..7, all, \"layer2.*\"")],
            examples: ["\(word) layer 3..", "\(word) layer \"layer1.*\""]
        ) { invocation, session in
            try applyQuantizer(quantizer, invocation: invocation, session: session)
        }
    }

    static let ternary = weightQuantizerCommand(
        "ternary", quantizer: .ternary, summary: "Ternarize layers (TWN: alpha * {-1, 0, +1})",
        help: "Threshold delta = 0.7 * mean|W| over the layer; alpha = mean |W| above delta.")

    static let binary = weightQuantizerCommand(
        "binary", quantizer: .binary, summary: "Binarize layers (alpha * sign(W), alpha = mean|W|)",
        help: "One bit per weight.")

    static let quantizeLayers = CommandSpec(
        ["quantize", "layer"], group: .quantization, summary: "Quantize layers to k bits",
        help: "dorefa: m * ((2/n) round(n (W/(2m) + 1/2)) - 1) with n = 2^k - 1 and m = max|W|. symmetric/asymmetric: uniform affine over [min(W,0), max(W,0)], per tensor or per output channel. Weights stay floats that lie exactly on the grid; the grid is recorded for export.",
        positionals: [Positional("layers", .layers, help: "which layers, e.g. 2..5")],
        options: [
            OptionParameter("bits", .integer(1...16), default: .integer(8), help: "bit width"),
            OptionParameter("scheme", .choice(QuantizationScheme.self), default: .choice(QuantizationScheme.dorefa), help: "quantizer"),
            OptionParameter("granularity", .choice(Granularity.self), default: .choice(Granularity.tensor), help: "one scale per tensor or per output channel"),
        ],
        examples: ["quantize layer 2..5 bits=6 scheme=dorefa", "quantize layer all bits=8 scheme=symmetric granularity=channel"]
    ) { invocation, session in
        let quantizer = try weightQuantizer(from: invocation)
        try applyQuantizer(quantizer, invocation: invocation, session: session)
    }

    static func weightQuantizer(from invocation: Invocation) throws -> WeightQuantizer {
        let bits = try invocation.int("bits")
        let scheme = try invocation.choice("scheme", as: QuantizationScheme.self)
        let granularity = try invocation.choice("granularity", as: Granularity.self)
        guard WeightQuantizer.validBits(for: scheme).contains(bits) else {
            let valid = WeightQuantizer.validBits(for: scheme)
            throw CommandError("\(scheme.rawValue) quantization needs \(valid.lowerBound)...\(valid.upperBound) bits, got \(bits)",
                               hint: "use 'ternary' or 'binary' for 2 or 1 levels")
        }
        if scheme == .dorefa && granularity == .tensor { return .dorefa(bits: bits) }
        return .uniform(bits: bits, scheme: scheme, granularity: granularity)
    }

    static func applyQuantizer(_ quantizer: WeightQuantizer, invocation: Invocation, session: Session) throws {
        var model = try session.requireModel(for: invocation.spec.name).model
        let layers = try invocation.layers(in: model)
        let results = try ModelTransforms.quantize(&model, layers: layers, with: quantizer)
        session.commit(model, step: invocation.text)
        let meanError = results.isEmpty ? 0 : results.map(\.relativeError).reduce(0, +) / Double(results.count)
        session.output.line("\(quantizer.label): \(results.count) layers (\(describeLayers(layers))), mean relative weight error \(String(format: "%.4f", meanError))")
    }

    static let compensateDFMPC = CommandSpec(
        ["compensate", "dfmpc"], group: .quantization,
        summary: "Data-free mixed-precision compensation of low-precision layers",
        help: """
            For each low-precision conv that feeds the next conv through BN and ReLU, quantizes the next conv to `high` bits (DoReFa) unless the recipe already set its precision, solves per-channel coefficients in closed form,
              c_j = (<Xh_j, X_j> + lambda1 * yh_j * y_j) / (|Xh_j|^2 + lambda1 * yh_j^2 + lambda2),
            and applies them in deployment form (scaling the BN of the low layer), so the high layer stays on its grid. Works with BN kept or folded.
            """,
        options: [
            OptionParameter("lambda1", .number(0...1_000_000), default: .number(0.5), aliases: ["lambda"], help: "weight of the BN-shift term"),
            OptionParameter("lambda2", .number(0...1_000_000), default: .number(0), help: "ridge term on c"),
            OptionParameter("high", .integer(2...16), default: .integer(6), help: "bits of the compensating layer"),
        ],
        examples: ["compensate dfmpc lambda=0.4", "compensate dfmpc lambda1=0.5 lambda2=0 high=6"]
    ) { invocation, session in
        var model = try session.requireModel(for: "compensate dfmpc").model
        guard model.hasQuantizedWeights else {
            throw CommandError("'compensate dfmpc' compensates low-precision layers, and no layer is quantized",
                               hint: "quantize first: 'mixed dfmpc low=ternary high=6', or 'ternary layer 3..' then 'compensate dfmpc'")
        }
        let options = DFMPCOptions(lambda1: Float(try invocation.double("lambda1")),
                                   lambda2: Float(try invocation.double("lambda2")),
                                   highBits: try invocation.int("high"))
        let reference = session.loaded?.model ?? model
        let report = try DFMPC.compensate(&model, reference: reference, options: options)
        session.commit(model, step: invocation.text)
        session.output.line(describe(report))
    }

    static func describe(_ report: DFMPCReport) -> String {
        let options = report.options
        var lines = [String(format: "DF-MPC (lambda1=%g, lambda2=%g, high=%d): %d pairs compensated, c in [%.4f, %.4f], mean %.4f",
                            options.lambda1, options.lambda2, options.highBits, report.pairs.count,
                            report.cMin, report.cMax, report.cMean)]
        let raised = report.pairs.filter(\.quantizedHighLayer).count
        if raised > 0 { lines.append("  \(raised) following layers quantized to \(options.highBits)-bit dorefa first") }
        lines.append("  \(report.guardedFilters) filters hit the zero guard (c = 1)"
                     + (report.clampedFilters > 0 ? ", \(report.clampedFilters) clamped at c = 0" : ""))
        lines.append(String(format: "  solved in %.2f ms", report.solveSeconds * 1000))
        return lines.joined(separator: "\n")
    }

    /// The named precisions of `mixed dfmpc low=`; an integer there means k-bit DoReFa.
    enum LowPrecision: String, CaseIterable {
        case ternary, binary
    }

    static let mixedDFMPC = CommandSpec(
        ["mixed", "dfmpc"], group: .quantization,
        summary: "Apply the DF-MPC paper's pairing: conv1 low, conv2 high in each block",
        help: "In each residual basic block, conv1 gets the low precision (ternary, binary or k-bit DoReFa) and conv2 `high`-bit DoReFa. On other graphs a conv whose only reader is another conv (through BN and ReLU/ReLU6) pairs with it, as the paper pairs them: a bottleneck's 3x3 low with the following 1x1 high, MobileNet's depthwise low with its pointwise high, VGG chains alternating; the pairs are printed when they are not basic blocks. The stem, shortcut convs and classifier stay float unless the recipe says otherwise. Follow with 'compensate dfmpc' to compensate.",
        options: [
            OptionParameter("low", .choiceOrInteger(LowPrecision.allCases.map(\.rawValue), 1...8), default: .choice(LowPrecision.ternary),
                            help: "precision of each block's first conv"),
            OptionParameter("high", .integer(2...16), default: .integer(6), help: "bits of each block's second conv"),
        ],
        examples: ["mixed dfmpc low=ternary high=6", "mixed dfmpc low=3 high=6"]
    ) { invocation, session in
        var model = try session.requireModel(for: "mixed dfmpc").model
        let low: WeightQuantizer
        if case .integer(let bits) = try invocation.required("low") {
            low = .dorefa(bits: bits)
        } else {
            switch try invocation.choice("low", as: LowPrecision.self) {
            case .ternary: low = .ternary
            case .binary: low = .binary
            }
        }
        let high = try invocation.int("high")
        let pairs = try DFMPC.applyMixedPrecision(&model, low: low, highBits: high)
        session.commit(model, step: invocation.text)
        // The zoo's ResNets pair each basic block's conv1 and conv2; other graphs show their pairs for checking.
        if pairs.allSatisfy({ $0.low.hasSuffix("conv1") && $0.high.hasSuffix("conv2") }) {
            session.output.line("mixed precision: \(pairs.count) blocks, conv1 \(low.label), conv2 \(high)-bit dorefa")
        } else {
            session.output.line("mixed precision: \(pairs.count) pairs, low \(low.label), high \(high)-bit dorefa")
            for pair in pairs { session.output.line("  \(pair.low) -> \(pair.high)") }
        }
    }
}
