import Foundation
import QuantOps

/// Evaluates zoo models on the CIFAR-10 test set through the engine's public API and prints
/// accuracy and throughput, one line per model. With `--onnx FILE`, times the compiled model
/// of an ONNX file alone on a ready-made batch of random images (`--images` of them), as ONNX
/// Runtime and OpenVINO are timed by Benchmarks/imported-throughput.sh.
///
/// usage: EngineBenchmark [--models DIR] [--data DIR] [--threads N] [--batch N] [--limit N] [--stride K]
///                        [--repeats N] [--backend onednn|im2col] model...
///        EngineBenchmark --onnx FILE [--size N] [--threads N] [--batch N] [--images N] [--repeats N]
struct Options {
    var models = ProcessInfo.processInfo.environment["QSH_MODELS"] ?? "../shared/models"
    /// As for qsh: the folder holding cifar-10-batches-bin/, or that folder itself.
    var data = ProcessInfo.processInfo.environment["QSH_DATA"] ?? "../shared/data"
    var threads = ProcessInfo.processInfo.activeProcessorCount
    var batch = 200
    var limit: Int?
    var stride = 1
    var repeats = 1
    var backend = ConvolutionBackend.current
    var names: [String] = []
    var onnx: String?
    var size = 224
    var images = 320
}

struct UsageError: Error, CustomStringConvertible {
    var description: String
}

func parse(_ arguments: [String]) throws -> Options {
    var options = Options()
    var iterator = arguments.makeIterator()
    func value(_ flag: String) throws -> String {
        guard let next = iterator.next() else { throw UsageError(description: "\(flag) needs a value") }
        return next
    }
    func number(_ flag: String) throws -> Int {
        let text = try value(flag)
        guard let parsed = Int(text), parsed > 0 else { throw UsageError(description: "\(flag) needs a positive integer, got '\(text)'") }
        return parsed
    }
    while let argument = iterator.next() {
        switch argument {
        case "--models": options.models = try value(argument)
        case "--data": options.data = try value(argument)
        case "--threads": options.threads = try number(argument)
        case "--batch": options.batch = try number(argument)
        case "--limit": options.limit = try number(argument)
        case "--stride": options.stride = try number(argument)
        case "--repeats": options.repeats = try number(argument)
        case "--onnx": options.onnx = try value(argument)
        case "--size": options.size = try number(argument)
        case "--images": options.images = try number(argument)
        case "--backend":
            switch try value(argument) {
            case "onednn": options.backend = .oneDNN
            case "im2col": options.backend = .im2colGEMM
            case let other: throw UsageError(description: "--backend is onednn or im2col, got '\(other)'")
            }
        default: options.names.append(argument)
        }
    }
    if options.names.isEmpty { options.names = ["resnet20", "resnet56"] }
    return options
}

/// Images per second of `CompiledModel.logits` on one batch fed `images / batch` times, best of
/// the repeats after a warm-up batch (which prepares the primitives).
func benchmarkONNX(_ file: String, _ options: Options) throws {
    let url = URL(fileURLWithPath: file)
    let imported = try ONNXImporter.load(contentsOf: url, name: url.deletingPathExtension().lastPathComponent,
                                         options: ONNXImportOptions(imageSize: options.size))
    let compiled = try CompiledModel(imported.model)
    var generator = SeededGenerator(seed: 0)
    let count = options.batch * 3 * options.size * options.size
    let input = Tensor(shape: [options.batch, 3, options.size, options.size],
                       data: (0..<count).map { _ in Float(generator.next() >> 40) / Float(1 << 24) * 2 - 1 })
    _ = try compiled.logits(input)
    let batches = max(1, options.images / options.batch)
    var best = Double.infinity
    for _ in 0..<options.repeats {
        let start = Date()
        for _ in 0..<batches { _ = try compiled.logits(input) }
        best = min(best, Date().timeIntervalSince(start))
    }
    print(String(format: "%@ images=%d seconds=%.3f images_per_s=%.1f threads=%d batch=%d isa=%@ own_kernels=%d",
                 imported.model.name, batches * options.batch, best, Double(batches * options.batch) / best,
                 options.threads, options.batch, CPUCapabilities.isaName, compiled.ownKernelConvolutions.count))
}

do {
    let options = try parse(Array(CommandLine.arguments.dropFirst()))
    // As the qsh binary chooses for a recipe of float inference only.
    CPUCapabilities.limitInstructionSet(.auto, floatInferenceOnly: true)
    EngineSettings.threads = options.threads
    ConvolutionBackend.current = options.backend
    if let file = options.onnx {
        try benchmarkONNX(file, options)
        exit(0)
    }
    let folder = try Fetcher.locateCIFAR10(in: [URL(fileURLWithPath: options.data)], allowDownload: false)
    let dataset = try CIFAR10.load(named: "cifar10", from: folder)
    for name in options.names {
        let entry = try ModelZoo.entry(named: name)
        let file = URL(fileURLWithPath: options.models).appendingPathComponent(entry.fileName)
        let model = try ModelZoo.build(entry, from: try CheckpointReader.read(contentsOf: file))
        var best: EvaluationResult?
        for _ in 0..<options.repeats {
            let result = try Evaluation.run(model: model, dataset: dataset, limit: options.limit, stride: options.stride,
                                            batchSize: options.batch)
            if best == nil || result.imagesPerSecond > best!.imagesPerSecond { best = result }
        }
        guard let result = best else { continue }
        print(String(format: "%@ images=%d top1=%.2f top5=%.2f seconds=%.3f images_per_s=%.1f threads=%d batch=%d backend=%@",
                     name, result.count, result.top1, result.top5, result.seconds, result.imagesPerSecond,
                     options.threads, options.batch, "\(options.backend)"))
    }
} catch {
    FileHandle.standardError.write(Data("EngineBenchmark: \(error)\n".utf8))
    exit(1)
}
