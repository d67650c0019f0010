import Foundation
import FuzzSupport
@_spi(Fuzzing) import QuantOps

/// Fuzz targets over the files qsh reads: pickles, torch checkpoints, safetensors, CIFAR-10
/// batches, ONNX models and JPEG/PNG images. scripts/fuzz.sh builds this with libFuzzer and picks the harness with
/// QSH_FUZZ_TARGET; see docs/fuzzing.md.
@main
struct FuzzMain {
    static func main() {
        FuzzDriver.main(product: "FuzzCheckpoints", harnesses: [
            "pickle": PickleHarness.run,
            "torch-legacy": { CheckpointHarness.run($0, format: .legacyPickle) },
            "torch-zip": { CheckpointHarness.run($0, format: .torchZip) },
            "safetensors": { CheckpointHarness.run($0, format: .safetensors) },
            "cifar": CIFARHarness.run,
            "onnx": ONNXHarness.run,
            "image": ImageHarness.run,
        ])
    }
}

/// The unpickler alone: whatever it builds is well formed.
enum PickleHarness {
    static func run(_ bytes: [UInt8]) {
        let inspection: PickleInspection
        do {
            inspection = try PickleInspection.inspect(bytes)
        } catch {
            expectCheckpointError(error, file: "fuzz.pkl")
            return
        }
        invariant(inspection.bytesConsumed <= bytes.count, "read \(inspection.bytesConsumed) of \(bytes.count) bytes")
        // Every opcode takes at least one byte and builds at most one object.
        invariant(inspection.objectCount <= inspection.bytesConsumed,
                  "\(inspection.objectCount) objects from \(inspection.bytesConsumed) bytes")
        invariant(inspection.danglingReferences == 0, "\(inspection.danglingReferences) references to missing objects")
        invariant(inspection.malformedReferences == 0, "\(inspection.malformedReferences) malformed tensor or storage references")
        invariant(inspection.tensorsOutsideMergedStorage == 0,
                  "\(inspection.tensorsOutsideMergedStorage) tensors outside the storage merged for them")
        if let names = inspection.stateDictTensorNames {
            invariant(!names.isEmpty && names.count <= inspection.tensorCount + inspection.objectCount,
                      "state dict of \(names.count) tensors")
        }
    }
}

/// One checkpoint reader, forced to its format: a file that loads holds consistent tensors, and
/// writing them as safetensors and reading that back gives the same tensors.
enum CheckpointHarness {
    static func run(_ bytes: [UInt8], format: Checkpoint.Format) {
        let checkpoint: Checkpoint
        do {
            checkpoint = try CheckpointReader.readCheckpoint(bytes: bytes, fileName: "fuzz.ckpt", format: format)
        } catch {
            expectCheckpointError(error, file: "fuzz.ckpt")
            return
        }
        invariant(checkpoint.format == format, "read as \(checkpoint.format), asked for \(format)")
        let dict = checkpoint.stateDict
        invariant(Set(dict.keys).count == dict.keys.count, "repeated keys \(dict.keys)")
        var elements = 0
        for key in dict.keys {
            guard let entry = dict[key] else { return invariant(false, "key \(key) lists no entry") }
            let shape = entry.tensor.shape
            invariant(shape.allSatisfy { $0 >= 0 }, "`\(key)` has shape \(shape)")
            invariant(shape.reduce(1, *) == entry.tensor.data.count,
                      "`\(key)` has shape \(shape) and \(entry.tensor.data.count) elements")
            elements += entry.tensor.data.count
        }
        // Decoding amplifies a file by a bounded factor only (CheckpointLimits in QuantOps): its
        // storages hold at most one element per stored byte, and zips expand by a bounded factor.
        let stored = format == .torchZip ? (bytes.count + 1024) * Int(CheckpointLimits.maximumZipExpansion) : bytes.count
        invariant(elements <= CheckpointLimits.maximumDecodedElements(storedElements: stored),
                  "\(elements) elements decoded from \(bytes.count) bytes")

        // A file that records integer layers (`save ... int8=true`) decodes them, or the error
        // names the file.
        var decoded = dict
        do {
            let precisions = try IntegerCheckpoint.dequantize(&decoded, metadata: checkpoint.metadata, file: "fuzz.ckpt")
            for layer in precisions.keys {
                invariant(decoded[layer + ".weight"]?.elementType == .float32 && decoded[layer + ".weight_scale"] == nil
                            && decoded[layer + ".weight_zero_point"] == nil, "integer layer \(layer) is not decoded")
            }
        } catch {
            expectCheckpointError(error, file: "fuzz.ckpt")
        }

        // Skip the round trip for names the safetensors header reserves.
        guard !dict.keys.contains(SafeTensorsWriter.metadataKey) else { return }
        let encoded = [UInt8](SafeTensorsWriter.encode(dict, metadata: checkpoint.metadata))
        let again: Checkpoint
        do {
            again = try CheckpointReader.readCheckpoint(bytes: encoded, fileName: "again.safetensors", format: .safetensors)
        } catch {
            return invariant(false, "the safetensors written from a loaded checkpoint do not read back: \(error)")
        }
        invariant(Set(again.stateDict.keys) == Set(dict.keys), "round trip keys \(again.stateDict.keys) != \(dict.keys)")
        invariant(again.metadata == checkpoint.metadata, "round trip metadata \(again.metadata) != \(checkpoint.metadata)")
        for key in dict.keys {
            guard let before = dict[key], let after = again.stateDict[key] else { continue }
            invariant(before.elementType == after.elementType && before.tensor.shape == after.tensor.shape
                        && zip(before.tensor.data, after.tensor.data).allSatisfy { $0.bitPattern == $1.bitPattern || ($0.isNaN && $1.isNaN) },
                      "`\(key)` changes in a safetensors round trip")
        }
    }
}

/// CIFAR-10 binary batches: labels and pixels are the record bytes, and batches normalize.
enum CIFARHarness {
    static func run(_ bytes: [UInt8]) {
        let data: CIFAR10
        do {
            data = try CIFAR10(name: "fuzz.bin", batch: Data(bytes))
        } catch let error as CIFAR10Error {
            invariant(bytes.isEmpty || bytes.count % CIFAR10.recordSize != 0
                        || stride(from: 0, to: bytes.count, by: CIFAR10.recordSize).contains { bytes[$0] >= 10 },
                      "a well-formed batch is refused: \(error)")
            return
        } catch {
            return invariant(false, "\(error) is not a CIFAR10Error")
        }
        invariant(data.count * CIFAR10.recordSize == bytes.count, "\(data.count) images from \(bytes.count) bytes")
        for image in 0..<data.count {
            let record = image * CIFAR10.recordSize
            invariant(data.labels[image] == bytes[record], "label of image \(image)")
            invariant(data.pixels[(image * CIFAR10.imageSize)..<((image + 1) * CIFAR10.imageSize)]
                        .elementsEqual(bytes[(record + 1)..<(record + CIFAR10.recordSize)]), "pixels of image \(image)")
        }
        let batch = data.batch([data.count - 1, 0], normalization: .init(mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25]))
        invariant(batch.shape == [2, 3, 32, 32], "batch shape \(batch.shape)")
        invariant(batch.data.allSatisfy { $0 >= -2 && $0 <= 2 }, "normalized pixels outside [-2, 2]")
    }
}

/// Readers fail with their own error type, naming the file: nothing else may escape.
func expectCheckpointError(_ error: Error, file: String) {
    guard let error = error as? CheckpointError else { return invariant(false, "\(error) is not a CheckpointError") }
    invariant(error.description.hasPrefix("\(file): "), "error does not name the file: \(error)")
}

/// ONNX models: a file imports into a model whose nodes read only earlier nodes, or the error is
/// an ONNXImportError (never a crash, a hang or an unbounded allocation). Activations are capped
/// lower than by default so that the import's check run stays fast.
enum ONNXHarness {
    static func run(_ bytes: [UInt8]) {
        let imported: ONNXImport
        do {
            imported = try ONNXImporter.read(Data(bytes), file: "fuzz.onnx", name: "fuzz",
                                             options: ONNXImportOptions(activationLimit: 1 << 16, workLimit: 1 << 22))
        } catch is ONNXImportError {
            return
        } catch {
            return invariant(false, "\(error) is not an ONNXImportError")
        }
        let model = imported.model
        invariant(model.nodes.first?.operation == .input, "the first node is not the input")
        invariant(model.inputShape.count == 3 && model.inputShape.reduce(1, *) <= 1 << 16, "input shape \(model.inputShape)")
        for (index, node) in model.nodes.enumerated() {
            invariant(node.inputs.allSatisfy { $0 >= 0 && $0 < index }, "node \(node.name) reads \(node.inputs)")
        }
        invariant(Set(model.nodes.map(\.name)).count == model.nodes.count, "repeated node names")
        invariant(ONNXImporter.supportedOpsets.contains(imported.opset), "opset \(imported.opset)")
    }
}

/// JPEG and PNG decoding (libjpeg-turbo, libpng behind CImageCodecs): a file decodes to
/// width x height x 3 bytes within the pixel limit, with the size its header gave, or the error
/// is an ImageDecodingError.
enum ImageHarness {
    static let path = (ProcessInfo.processInfo.environment["TMPDIR"] ?? "/tmp") + "/qsh-fuzz-image-\(getpid())"

    static func run(_ bytes: [UInt8]) {
        guard FileManager.default.createFile(atPath: path, contents: Data(bytes)) else {
            return invariant(false, "cannot write \(path)")
        }
        defer { try? FileManager.default.removeItem(atPath: path) }
        let header: (width: Int, height: Int)
        do {
            header = try ImageDecoding.size(of: path)
        } catch is ImageDecodingError {
            return
        } catch {
            return invariant(false, "\(error) is not an ImageDecodingError")
        }
        invariant(header.width >= 1 && header.height >= 1 && header.width * header.height <= ImageDecoding.maximumPixels,
                  "header size \(header)")
        do {
            let image = try ImageDecoding.rgb(path)
            invariant(image.width == header.width && image.height == header.height, "decoded \(image.width)x\(image.height), header \(header)")
            invariant(image.pixels.count == image.width * image.height * 3, "\(image.pixels.count) bytes for \(image.width)x\(image.height)")
        } catch is ImageDecodingError {
            return
        } catch {
            invariant(false, "\(error) is not an ImageDecodingError")
        }
    }
}
