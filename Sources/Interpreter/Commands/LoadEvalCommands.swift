import CShims
import Foundation
import QuantOps

/// Commands that read and write files: load a model, evaluate it, save it, re-estimate BN.
enum LoadEvalCommands {
    static var all: [CommandSpec] {
        [load, evaluate, save, recalibrateBatchNorm]
    }

    static let load = CommandSpec(
        ["load"], group: .model, summary: "Load a pretrained model from the zoo, a checkpoint or an ONNX file",
        help: """
            Zoo names: \(ModelZoo.entries.map(\.name).joined(separator: ", ")). Standard architectures, read from a PyTorch checkpoint of any width ('load resnet50 from "resnet50.pth"'): \(StandardArchitecture.allCases.map(\.rawValue).joined(separator: ", ")); their pretrained weights are not downloaded. The checkpoint is looked up in the models directory (--models, 'set models=', $QSH_MODELS, then the user cache) and downloaded when missing and a URL is known. 'from' reads a given file (legacy torch pickle, torch zip, or safetensors) into the named architecture. An .onnx file (opsets \(ONNXImporter.supportedOpsets.lowerBound) to \(ONNXImporter.supportedOpsets.upperBound)) brings its own architecture: 'load NAME from "model.onnx"' names it, 'load "model.onnx"' names it after the file; size= gives the image size where the graph leaves it symbolic, mean= and std= the normalization on [0, 1] pixels (one value or one per channel; a file qsh exported carries its own). docs/models.md lists the operators.
            """,
        positionals: [
            Positional("model", .text, help: "a zoo name such as resnet20, the name to give an ONNX model, or an .onnx file"),
            Positional("file", keyword: "from", .path, optional: true, help: "a checkpoint or .onnx file to read instead of the zoo's"),
        ],
        options: [
            OptionParameter("size", .integer(1...16384), help: "ONNX: the input's height and width where the graph leaves them symbolic"),
            OptionParameter("mean", .numbers(-1000...1000), help: "ONNX: per-channel mean subtracted from [0, 1] pixels"),
            OptionParameter("std", .numbers(0.000001...1000), help: "ONNX: per-channel divisor after the mean"),
        ],
        examples: ["load resnet20", "load nm-resnet56", "load resnet20 from \"my-run.safetensors\"",
                   "load lite0 from \"efficientnet-lite0.onnx\" mean=0.498 std=0.502", "load \"model.onnx\" size=224"]
    ) { invocation, session in
        var name = try invocation.string("model")
        var filePath = invocation.optionalString("file")
        if filePath == nil, name.lowercased().hasSuffix(".onnx") {
            filePath = name
            name = URL(fileURLWithPath: name).deletingPathExtension().lastPathComponent
        }
        if let filePath, filePath.lowercased().hasSuffix(".onnx") {
            try loadONNX(name: name, path: filePath, invocation: invocation, session: session)
            return
        }
        for option in ["size", "mean", "std"] where invocation.isSet(option) {
            throw CommandError("\(option)= describes an ONNX graph's input; a checkpoint of a zoo architecture has its own",
                               hint: "leave out \(option)=, or load an .onnx file")
        }
        if let filePath, (try? ModelZoo.entry(named: name)) == nil {
            try loadStandard(name: name, path: filePath, session: session)
            return
        }
        if StandardArchitecture(rawValue: name.lowercased()) != nil {
            throw CommandError("\(name) is an architecture qsh builds from a checkpoint, but its pretrained weights are not downloadable here",
                               hint: "read a checkpoint of it: load \(name.lowercased()) from \"\(name.lowercased()).pth\" (torchvision's state_dict), or its ONNX export: load \(name.lowercased()) from \"\(name.lowercased()).onnx\"")
        }
        let entry: ModelZoo.Entry
        do {
            entry = try ModelZoo.entry(named: name)
        } catch {
            throw CommandError(String(describing: error), hint: "known models: " + ModelZoo.entries.map(\.name).joined(separator: ", ")
                               + "; any CNN as ONNX: load \(name.isEmpty ? "NAME" : name) from \"FILE.onnx\"")
        }
        let url: URL
        if let path = filePath {
            url = URL(fileURLWithPath: path)
            guard FileManager.default.fileExists(atPath: url.path) else {
                throw CommandError("checkpoint '\(path)' does not exist", hint: "check the path; it is relative to \(FileManager.default.currentDirectoryPath)")
            }
        } else {
            let progress = ProgressBar("downloading \(entry.fileName)", sink: session.errors, enabled: session.settings.progress)
            defer { progress.finish() }
            do {
                url = try Fetcher.locate(entry.remoteFile, in: session.modelDirectories, allowDownload: session.settings.allowDownload) { done, total in
                    progress.update(done: Int(done), total: Int(total ?? 0))
                } shouldStop: { qsh_interrupt_requested() != 0 }
            } catch let error as ResourceError {
                let downloadable = ModelZoo.entries.filter { $0.downloadURL != nil }.map(\.name)
                let byHand = ModelZoo.entries.filter { $0.downloadURL == nil }.map(\.name)
                throw CommandError(error.description, hint: "zoo models that download themselves: \(downloadable.joined(separator: ", ")); "
                                   + "placed by hand: \(byHand.joined(separator: ", ")) (nm-resnet56 is the Neuron-Merging repository's ResNet-56 checkpoint, "
                                   + "which has no public download); or read a file with 'load \(entry.name) from \"FILE\"'")
            }
        }
        let checkpoint = try CheckpointReader.readCheckpoint(contentsOf: url)
        // A file written by 'save ... int8=true' holds integer codes: back to the same state.
        var stateDict = checkpoint.stateDict
        let precisions = try IntegerCheckpoint.dequantize(&stateDict, metadata: checkpoint.metadata, file: url.lastPathComponent)
        var model = try ModelZoo.build(entry, from: stateDict)
        try IntegerCheckpoint.apply(precisions, to: &model, file: url.lastPathComponent)
        install(model, origin: entry.name, from: url, session: session)
    }

    /// Makes `model` the session's current and loaded state, with a fresh history, and says so.
    static func install(_ model: Model, origin: String, from url: URL, details: String = "", session: Session) {
        let checksum = try? Checksum.sha256(of: url)
        let state = ModelState(model: model, origin: origin, checksum: checksum)
        session.install(state)
        let layers = model.weightLayers
        let parameters = layers.reduce(0) { $0 + $1.parameterCount }
        session.output.line("loaded \(origin) from \(url.path): \(layers.count) layers, \(parameters) parameters, "
                            + String(format: "%.2f MB", ExploreCommands.megabytes(bits: 32, parameters: parameters)) + details)
    }

    /// A checkpoint of a standard PyTorch CNN (torchvision ResNet-18/34/50, VGG16-BN, MobileNetV2;
    /// the CIFAR ResNet-18 and VGG16-BN), recognised from its key names and shapes. A name that
    /// is an architecture's must match what the checkpoint holds.
    static func loadStandard(name: String, path: String, session: Session) throws {
        let url = session.locate(path, in: session.modelDirectories)
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw CommandError("checkpoint '\(path)' does not exist", hint: "check the path; it is relative to \(FileManager.default.currentDirectoryPath)")
        }
        let checkpoint = try CheckpointReader.readCheckpoint(contentsOf: url)
        var stateDict = checkpoint.stateDict
        let precisions = try IntegerCheckpoint.dequantize(&stateDict, metadata: checkpoint.metadata, file: url.lastPathComponent)
        let architecture: StandardArchitecture
        do {
            architecture = try StandardArchitecture.identify(stateDict)
        } catch {
            throw CommandError(String(describing: error), hint: "zoo names: " + ModelZoo.entries.map(\.name).joined(separator: ", ")
                               + "; standard architectures: " + StandardArchitecture.allCases.map(\.rawValue).joined(separator: ", ")
                               + "; any CNN as ONNX: load \(name) from \"FILE.onnx\"")
        }
        if let named = StandardArchitecture(rawValue: name.lowercased()), named != architecture {
            throw CommandError("'\(path)' holds a \(architecture.rawValue), not a \(named.rawValue)",
                               hint: "load \(architecture.rawValue) from \"\(path)\", or give the model another name")
        }
        var model = try StandardArchitecture.build(architecture, from: stateDict, name: name)
        try IntegerCheckpoint.apply(precisions, to: &model, file: url.lastPathComponent)
        install(model, origin: name, from: url, details: " (\(architecture.rawValue), input \(model.inputShape.map(String.init).joined(separator: "x")))",
                session: session)
    }

    static func loadONNX(name: String, path: String, invocation: Invocation, session: Session) throws {
        let url = session.locate(path, in: session.modelDirectories)
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw CommandError("ONNX file '\(path)' does not exist",
                               hint: "check the path; it is relative to \(FileManager.default.currentDirectoryPath) or to the models directory ("
                                   + session.modelDirectories.map(\.path).joined(separator: ", ") + ")")
        }
        guard !name.isEmpty else { throw CommandError("the model needs a name", hint: "load NAME from \"\(path)\"") }
        var normalization: Normalization?
        if invocation.isSet("mean") || invocation.isSet("std") {
            guard let mean = invocation.optionalDoubles("mean"), let std = invocation.optionalDoubles("std") else {
                throw CommandError("mean= and std= go together", hint: "e.g. mean=0.485, 0.456, 0.406 std=0.229, 0.224, 0.225 (ImageNet)")
            }
            normalization = Normalization(mean: mean.map { Float($0) }, std: std.map { Float($0) })
        }
        let imported: ONNXImport
        do {
            imported = try ONNXImporter.load(contentsOf: url, name: name,
                                             options: ONNXImportOptions(imageSize: invocation.optionalInt("size"), normalization: normalization))
        } catch let error as ONNXImportError {
            throw CommandError(error.description, hint: error.remedy ?? "docs/models.md lists what qsh reads")
        }
        let model = imported.model
        let source: String
        switch imported.normalizationSource {
        case .options: source = "normalization as given"
        case .metadata: source = "normalization from the file's qsh metadata"
        case .none: source = "no normalization given: pixels in [0, 1] (give mean= and std=)"
        }
        let shape = model.inputShape.map(String.init).joined(separator: "x")
        install(model, origin: name, from: url,
                details: "; ONNX opset \(imported.opset), input \(shape), \(model.nodes.count) nodes (\(imported.foldedNodes) constant nodes folded); \(source)",
                session: session)
    }

    static let evaluate = CommandSpec(
        ["eval"], group: .model, summary: "Measure top-1 and top-5 accuracy on a data set",
        help: "Records are visited in file order (the official order for CIFAR-10 and CIFAR-100), so 'eval cifar10 limit=1000' takes the first 1,000 test images and 'stride=10' every 10th; both are the subsets any user of the official files gets. cifar10-train is every training batch present; a limit that needs a missing batch is an error that names it. cifar100 and cifar100-train read cifar-100-binary/test.bin and train.bin (the fine labels, 100 classes). 'eval imagefolder \"DIR\"' reads a folder of JPEG and PNG images in torchvision's ImageFolder layout (one subfolder per class, classes sorted), prepared exactly as PIL and torchvision prepare them: shorter side resized to resize= with Pillow's antialiased filter, center crop crop=, then the model's normalization; the options are remembered for the folder, so 'calibrate data=\"imagefolder:DIR\"' and other data= uses read it the same way. Files that are not readable images are skipped with a warning (strict=true: an error). The result is kept as top1 and top5 for 'expect' and 'results'.",
        positionals: [
            Positional("data", .text, help: "a data set: cifar10 (test), cifar10-train, cifar100, cifar100-train, or imagefolder followed by the folder"),
            Positional("folder", .path, optional: true, help: "after imagefolder: the folder of images, one subfolder per class"),
            Positional("logits", keyword: "logits", .choice(["to"]), optional: true, help: "also write the logits: 'logits to \"FILE\"'"),
            Positional("file", .path, optional: true, help: "the .npy file for the logits (float32, images x classes, in evaluation order)"),
        ],
        options: [
            OptionParameter("limit", .integer(1...10_000_000), help: "at most this many images (after striding)"),
            OptionParameter("stride", .integer(1...10_000_000), default: .integer(1), help: "every K-th image"),
            OptionParameter("batch", .integer(1...100_000), default: .integer(250), help: "images per forward pass"),
            OptionParameter("shard", .text, help: "evaluate only part INDEX/COUNT of the images (e.g. \"0/4\"), or auto: the part of this process's --shard; 'qsh merge' adds the parts up exactly"),
            OptionParameter("engine", .choice(Arithmetic.self),
                            help: "float, or int8: quantized convolutions run on integers (default: 'set engine', float)"),
        ] + imageFolderParameters,
        examples: ["eval cifar10", "eval cifar10 limit=1000", "eval cifar10 engine=int8", "eval cifar10 stride=10", "eval cifar10 shard=auto", "eval cifar10 shard=\"1/4\"", "eval cifar10 logits to \"logits.npy\"",
                   "eval cifar100", "eval imagefolder \"imagenet/val\"", "eval imagefolder \"imagenet/val\" resize=256 crop=224 interpolation=bilinear limit=500",
                   "eval imagefolder \"images\" labels=\"labels.txt\" strict=true"]
    ) { invocation, session in
        let state = try session.requireModel(for: "eval")
        let logitsPath = invocation.optionalString("file")
        guard (logitsPath == nil) == (invocation.value("logits") == nil) else {
            throw CommandError("'eval' writes logits with 'logits to \"FILE\"'", hint: "e.g. eval \(try invocation.string("data")) logits to \"logits.npy\"")
        }
        let dataset = try evaluationData(invocation, session: session)
        let name = dataset.name
        let limit = invocation.optionalInt("limit")
        let stride = try invocation.int("stride")
        if let limit { try dataset.requireRecords((limit - 1) * stride + 1) }
        let part = try dataPart(invocation.optionalString("shard"), session: session)
        // Without engine=, the session's setting: a default that 'set' changes, so not a declared one.
        let engine = try invocation.optionalChoice("engine", as: Arithmetic.self) ?? session.settings.engine
        let progress = ProgressBar("eval \(name)", sink: session.errors, enabled: session.settings.progress)
        var logits: [Float] = []
        var classes = 0
        let result = try Evaluation.run(
            model: state.model, dataset: dataset, limit: limit, stride: stride,
            part: part, batchSize: try invocation.int("batch"), arithmetic: engine,
            progress: { done, total in progress.update(done: done, total: total) },
            shouldStop: { qsh_interrupt_requested() != 0 },
            logits: logitsPath == nil ? nil : { batch in
                classes = batch.shape[1]
                logits.append(contentsOf: batch.data)
            })
        progress.finish()
        if result.stoppedEarly { throw Interrupted() }
        if let logitsPath {
            try NumPyFile.write(logits, shape: [result.count, classes], to: URL(fileURLWithPath: logitsPath))
        }
        session.values["top1"] = result.top1
        session.values["top5"] = result.top5
        session.values["images"] = Double(result.count)
        // An int8 evaluation is a measurement of its own: the results table and reports say so.
        session.evaluations.append(EvaluationRecord(state: state.summary + (engine == .int8 ? " [engine int8]" : ""), dataset: name, images: result.count,
                                                    top1: result.top1, top5: result.top5, seconds: result.seconds,
                                                    top1Correct: result.top1Correct, top5Correct: result.top5Correct,
                                                    dataShard: part))
        session.output.line(String(format: "top-1 %.2f%%  top-5 %.2f%%  (%d images, %.2f s, %.0f images/s)",
                                   result.top1, result.top5, result.count, result.seconds, result.imagesPerSecond)
                            + (part.map { " part \($0) of the images" } ?? ""))
        if engine == .int8 { session.output.line(integerSummary(state.model)) }
        if let logitsPath { session.output.line("wrote logits (\(result.count) x \(classes), float32) to \(logitsPath)") }
    }

    /// How an image folder is read; `eval` takes them, and `data="imagefolder:DIR"` elsewhere
    /// reuses what the last `eval` of that folder gave.
    static let imageFolderParameters = [
        OptionParameter("resize", .integer(1...65_536), default: .integer(ImagePreprocessing().resize),
                        help: "image folders: the shorter side is resized to this many pixels"),
        OptionParameter("crop", .integer(1...65_536), default: .integer(ImagePreprocessing().crop), help: "image folders: the center crop's side"),
        OptionParameter("interpolation", .choice(ResampleFilter.self), default: .choice(ImagePreprocessing().filter),
                        help: "image folders: Pillow's resize filter, antialiased as in torchvision"),
        OptionParameter("strict", .boolean, default: .boolean(false),
                        help: "image folders: an unreadable image file is an error instead of being skipped"),
        OptionParameter("labels", .path, help: "image folders: a text file of 'relative/path label' lines to read instead of class subfolders"),
    ]

    /// The data set `eval` names: a standard or session data set by name, or an image folder
    /// (`eval imagefolder "DIR"`, or the data word `imagefolder:DIR`) read with the options given.
    static func evaluationData(_ invocation: Invocation, session: Session) throws -> any LabeledImages {
        let word = try invocation.string("data")
        let imageOptions = imageFolderParameters.map(\.name).filter { invocation.explicitOptions.contains($0) }
        let folder: String
        if word == ImageFolderName.word {
            guard let given = invocation.optionalString("folder") else {
                throw CommandError("'eval imagefolder' needs the folder of images", hint: "e.g. eval imagefolder \"/data/imagenet/val\"")
            }
            folder = given
        } else if let named = ImageFolderName.folder(in: word), invocation.optionalString("folder") == nil {
            folder = named
        } else {
            if let extra = invocation.optionalString("folder") {
                throw CommandError("'eval \(word)' takes no folder, and '\(extra)' follows it",
                                   hint: "a folder of images: eval imagefolder \"\(extra)\"; logits: eval \(word) logits to \"\(extra)\"")
            }
            if let option = imageOptions.first {
                throw CommandError("\(option)= applies to image folders, and \(word) is not one", hint: "e.g. eval imagefolder \"DIR\" \(option)=...")
            }
            return try session.dataset(named: word)
        }
        // Options not given keep the declared defaults (not an earlier eval's), so that a line
        // means the same wherever it stands.
        let options = ImageFolderOptions(
            preprocessing: ImagePreprocessing(resize: try invocation.int("resize"), crop: try invocation.int("crop"),
                                              filter: try invocation.choice("interpolation", as: ResampleFilter.self)),
            strict: try invocation.bool("strict"),
            labelsFile: invocation.optionalString("labels"))
        return try session.imageFolder(folder, options: options)
    }

    /// Which layers an int8 eval ran on integers, and why the others ran in float.
    static func integerSummary(_ model: Model) -> String {
        let plan = IntegerPlan.of(model)
        let isa = CPUCapabilities.isaName + (plan.vnni ? "" : ", no VNNI")
        var line = "engine int8 (\(isa)): \(plan.integerLayerCount) of \(plan.layers.count) layers on integers"
        if plan.integerLayerCount < plan.layers.count { line += "; 'layers' says why the others run in float" }
        return line
    }

    /// The part of the data an eval covers: `auto` follows `--shard` outside sweeps (inside one,
    /// the item is already the unit that shards share out, so it sees all the data).
    static func dataPart(_ text: String?, session: Session) throws -> Shard? {
        guard let text else { return nil }
        if text == "auto" {
            guard session.sweep.currentItem == nil, let shard = session.sweep.shard else { return nil }
            session.sweep.dataSharded = true
            return shard
        }
        do {
            return try Shard(parsing: text)
        } catch {
            throw CommandError("shard=\(text): \(error)", hint: "write shard=\"0/4\" for the first of four parts, or shard=auto with 'qsh FILE --shard i/N'")
        }
    }

    static let save = CommandSpec(
        ["save"], group: .model, summary: "Write the current weights as safetensors, under PyTorch key names",
        help: "Quantized layers are written as their fake-quantized float values, BN as it stands; with int8=true they are written as integer codes with their scales and zero points (LAYER.weight as I8, or I32 for grids wider than 8 bits, LAYER.weight_scale, LAYER.weight_zero_point; w = scale * (code - zero point) per output channel), so that a runtime needs no re-quantization, and 'load ... from' gives the same state back. The file appears only when complete (written to a temporary file, then renamed).",
        positionals: [Positional("file", .path, help: "the .safetensors file to write")],
        options: [OptionParameter("int8", .boolean, default: .boolean(false), help: "store quantized weights as integer codes, scales and zero points")],
        examples: ["save \"resnet20-mp26.safetensors\"", "save \"resnet20-w8.safetensors\" int8=true"]
    ) { invocation, session in
        let state = try session.requireModel(for: "save")
        let path = try invocation.string("file")
        var metadata = ["qsh_version": QshVersion.string, "model": state.origin, "steps": state.steps.joined(separator: "; ")]
        var dict = state.model.stateDict()
        var integerLayers = 0
        if try invocation.bool("int8") {
            let (integerDict, precisions) = try IntegerCheckpoint.stateDict(of: state.model)
            dict = integerDict
            metadata.merge(precisions) { _, new in new }
            integerLayers = state.model.weightLayers.filter(\.precision.isQuantized).count
        }
        try SafeTensorsWriter.write(dict, to: URL(fileURLWithPath: path), metadata: metadata)
        session.output.line("saved \(dict.count) tensors to \(path)" + (integerLayers > 0 ? " (\(integerLayers) layers as integer codes)" : ""))
    }

    static let recalibrateBatchNorm = CommandSpec(
        ["recalibrate", "bn"], group: .quantization,
        summary: "Re-estimate BN running statistics through the current model",
        help: "Exact population statistics over all the samples (not a momentum average), layer by layer in execution order, so the result does not depend on the batch size. Needs BN kept: run it before 'fold bn'.",
        options: [
            OptionParameter("data", .text, default: .word("cifar10-train"), help: "calibration images (a data set name: cifar10-train, cifar100-train, \"imagefolder:DIR\", distilled ...)"),
            OptionParameter("samples", .integer(1...1_000_000), default: .integer(1024), help: "how many images"),
            OptionParameter("batch", .integer(1...100_000), default: .integer(256), help: "images per forward pass"),
        ],
        examples: ["recalibrate bn data=cifar10-train samples=1024", "recalibrate bn data=\"imagefolder:imagenet/train\" samples=1024"]
    ) { invocation, session in
        var model = try session.requireModel(for: "recalibrate bn").model
        let name = try invocation.string("data")
        let dataset = try session.dataset(named: name)
        let indices = try dataset.sampleIndices(try invocation.int("samples"))
        let images = try dataset.batch(indices, normalization: model.normalization)
        let report = try BatchNormRecalibration.run(&model, images: images, batchSize: try invocation.int("batch"),
                                                    shouldStop: { qsh_interrupt_requested() != 0 })
        session.commit(model, step: invocation.text)
        session.output.line(report.summary)
    }
}
