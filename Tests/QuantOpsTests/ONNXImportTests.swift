import Foundation
import ONNX
@testable import QuantOps
import SwiftProtobuf
import XCTest

/// ONNX import against ONNX Runtime: the fixtures are PyTorch models with random weights at
/// reduced width, exported by scripts/make-onnx-fixtures.py together with an input and ONNX
/// Runtime's logits for it; EfficientNet-Lite0 is the shared pretrained export.
final class ONNXImportTests: XCTestCase {
    static let fixtures = EngineFixtures.packageRoot.appendingPathComponent("Tests/QuantOpsTests/Fixtures/onnx")
    static let models = ["resnet18", "resnet50", "vgg16bn", "mobilenetv2", "denseblock", "squeezeexcite", "paddedconv", "constantarithmetic"]

    /// max |a - b| relative to max |reference|.
    static func relativeError(_ values: [Float], _ reference: [Float]) -> Float {
        let scale = reference.map(abs).max() ?? 1
        return zip(values, reference).map { abs($0 - $1) }.max()! / max(scale, 1e-12)
    }

    func importFixture(_ name: String) throws -> Model {
        try ONNXImporter.load(contentsOf: Self.fixtures.appendingPathComponent(name + ".onnx"), name: name).model
    }

    func testEveryFixtureGivesONNXRuntimeLogitsOnBothExecutors() throws {
        for name in Self.models {
            let model = try importFixture(name)
            let input = try NumPyFile.read(contentsOf: Self.fixtures.appendingPathComponent(name + ".input.npy"))
            let expected = try NumPyFile.read(contentsOf: Self.fixtures.appendingPathComponent(name + ".logits.npy"))
            let batch = Tensor(shape: input.shape, data: input.values)
            let compiled = try CompiledModel(model).logits(batch)
            let reference = try ForwardPass.run(model, input: batch)
            XCTAssertEqual(compiled.shape, expected.shape, name)
            XCTAssertLessThan(Self.relativeError(compiled.data, expected.values), 1e-4, "\(name), oneDNN executor")
            XCTAssertLessThan(Self.relativeError(reference.data, expected.values), 1e-4, "\(name), reference executor")
        }
    }

    func testFixturesMapOntoTheExpectedOperations() throws {
        func count(_ model: Model, _ matches: (QuantOps.Operation) -> Bool) -> Int { model.nodes.filter { matches($0.operation) }.count }
        let dense = try importFixture("denseblock")
        XCTAssertEqual(count(dense) { $0 == .concat }, 3)
        let excite = try importFixture("squeezeexcite")
        XCTAssertEqual(count(excite) { $0 == .multiply }, 2)
        XCTAssertEqual(count(excite) { if case .pointwise = $0 { return true } else { return false } }, 4)
        let mobile = try importFixture("mobilenetv2")
        XCTAssertEqual(count(mobile) { $0 == .relu6 }, 21)
        XCTAssertTrue(mobile.nodes.contains { if case .conv(let conv) = $0.operation { return conv.groups > 1 } else { return false } })
        // The zero padding of ZeroPad2d((0, 1, 0, 1)) is the following convolution's own.
        let padded = try importFixture("paddedconv")
        let asymmetric = padded.nodes.compactMap { node -> Conv2D? in
            if case .conv(let conv) = node.operation, conv.trailingPadding != conv.padding { return conv }
            return nil
        }
        XCTAssertEqual(asymmetric.count, 2)
        XCTAssertEqual(asymmetric.first.map { [$0.padding.0, $0.padding.1, $0.trailingPadding.0, $0.trailingPadding.1] }, [0, 0, 1, 1])
        // Layers are named after their PyTorch modules.
        let resnet = try importFixture("resnet18")
        XCTAssertEqual(resnet.weightLayerNodes.prefix(3).map { resnet.nodes[$0].name }, ["conv1", "layer1.0.conv1", "layer1.0.conv2"])
        XCTAssertEqual(resnet.inputShape, [3, 64, 64])
    }

    func testEfficientNetLite0GivesONNXRuntimeLogits() throws {
        let url = EngineFixtures.modelsDirectory.appendingPathComponent("efficientnet-lite0.onnx")
        guard FileManager.default.fileExists(atPath: url.path) else { throw XCTSkip("no \(url.path)") }
        let normalization = Normalization(mean: [Float](repeating: 127.0 / 255, count: 3), std: [Float](repeating: 128.0 / 255, count: 3))
        let imported = try ONNXImporter.load(contentsOf: url, name: "lite0",
                                             options: ONNXImportOptions(imageSize: 224, normalization: normalization))
        XCTAssertEqual(imported.opset, 13)
        XCTAssertEqual(imported.model.weightLayers.count, 50)
        let pixels = try NumPyFile.read(contentsOf: Self.fixtures.appendingPathComponent("efficientnet-lite0.input-u8.npy"))
        let expected = try NumPyFile.read(contentsOf: Self.fixtures.appendingPathComponent("efficientnet-lite0.logits.npy"))
        let batch = Tensor(shape: pixels.shape, data: pixels.values.map { ($0 - 127) / 128 })
        let logits = try CompiledModel(imported.model).logits(batch)
        XCTAssertLessThan(Self.relativeError(logits.data, expected.values), 1e-4)
        XCTAssertEqual(logits.data[0 ..< 1000].indices.max { logits.data[$0] < logits.data[$1] }, 0)
    }

    // MARK: - Bad input

    func proto(_ name: String) throws -> Onnx_ModelProto {
        try Onnx_ModelProto(serializedBytes: Data(contentsOf: Self.fixtures.appendingPathComponent(name + ".onnx")))
    }

    func importError(_ proto: Onnx_ModelProto, options: ONNXImportOptions = ONNXImportOptions(),
                     file: StaticString = #filePath, line: UInt = #line) throws -> ONNXImportError? {
        do {
            _ = try ONNXImporter.read(try proto.serializedBytes(), file: "bad.onnx", name: "bad", options: options)
            XCTFail("imported without an error", file: file, line: line)
            return nil
        } catch let error as ONNXImportError {
            return error
        }
    }

    func testUnsupportedOperatorNamesTheNodeAndTheSupportedOps() throws {
        var model = try proto("resnet18")
        let index = model.graph.node.firstIndex { $0.opType == "Relu" }!
        model.graph.node[index].opType = "Softplus"
        let error = try XCTUnwrap(try importError(model))
        XCTAssertEqual(error.node, "'\(model.graph.node[index].name)' (Softplus)")
        XCTAssertTrue(error.problem.contains("Softplus is not an operator qsh runs"), error.problem)
        XCTAssertTrue(error.remedy?.contains("HardSwish") == true)
    }

    func testMissingInputAndCyclesAreErrors() throws {
        var model = try proto("resnet18")
        model.graph.node[3].input[0] = "nowhere"
        XCTAssertTrue(try XCTUnwrap(try importError(model)).problem.contains("reads 'nowhere'"))
        // A node reading its own output (a cycle) reads a value not produced before it.
        var cyclic = try proto("resnet18")
        cyclic.graph.node[2].input[0] = cyclic.graph.node[2].output[0]
        XCTAssertTrue(try XCTUnwrap(try importError(cyclic)).remedy?.contains("cycle") == true)
    }

    func testHostileSizesAndTypesAreErrors() throws {
        var huge = try proto("resnet18")
        let weight = huge.graph.initializer.firstIndex { $0.dims.count == 4 }!
        huge.graph.initializer[weight].dims = [1 << 20, 1 << 20, 3, 3]
        XCTAssertTrue(try XCTUnwrap(try importError(huge)).problem.contains("more than"))
        var short = try proto("resnet18")
        short.graph.initializer[weight].rawData = short.graph.initializer[weight].rawData.prefix(10)
        XCTAssertTrue(try XCTUnwrap(try importError(short)).problem.contains("bytes of data"))
        var strings = try proto("resnet18")
        strings.graph.initializer[weight].dataType = Int32(Onnx_TensorProto.DataType.string.rawValue)
        XCTAssertTrue(try XCTUnwrap(try importError(strings)).problem.contains("element type"))
        var external = try proto("resnet18")
        external.graph.initializer[weight].dataLocation = .external
        XCTAssertTrue(try XCTUnwrap(try importError(external)).remedy?.contains("save_as_external_data") == true)
        var old = try proto("resnet18")
        old.opsetImport[0].version = 9
        XCTAssertTrue(try XCTUnwrap(try importError(old)).problem.contains("opset 9"))
    }

    /// The work limit counts multiply-adds exactly: a limit one below the stem convolution's own
    /// cost stops at that node, and a limit equal to it lets the import go on to a later node.
    func testWorkLimitCountsMultiplyAddsPerImage() throws {
        let model = try proto("resnet18")
        let imported = try ONNXImporter.read(try model.serializedBytes(), file: "r.onnx", name: "r").model
        guard let stem = imported.nodes.lazy.compactMap({ node -> Conv2D? in
            if case .conv(let conv) = node.operation { return conv } else { return nil }
        }).first else { return XCTFail("no convolution") }
        let (channels, height, width) = (imported.inputShape[0], imported.inputShape[1], imported.inputShape[2])
        let (outChannels, kernelHeight, kernelWidth) = (stem.weight.shape[0], stem.weight.shape[2], stem.weight.shape[3])
        let outHeight = (height + stem.padding.0 + stem.trailingPadding.0 - stem.dilation.0 * (kernelHeight - 1) - 1) / stem.stride.0 + 1
        let outWidth = (width + stem.padding.1 + stem.trailingPadding.1 - stem.dilation.1 * (kernelWidth - 1) - 1) / stem.stride.1 + 1
        let stemWork = outChannels * outHeight * outWidth * (channels / stem.groups) * kernelHeight * kernelWidth
        let stemNode = try XCTUnwrap(model.graph.node.first { $0.opType == "Conv" }).name

        let atStem = try XCTUnwrap(try importError(model, options: ONNXImportOptions(workLimit: stemWork - 1)))
        XCTAssertTrue(atStem.node?.contains(stemNode) == true, "\(atStem)")
        XCTAssertTrue(atStem.problem.contains("\(stemWork - 1) multiply-adds per image"), atStem.problem)
        XCTAssertNotNil(atStem.remedy)
        let later = try XCTUnwrap(try importError(model, options: ONNXImportOptions(workLimit: stemWork)))
        XCTAssertFalse(later.node?.contains(stemNode) == true, "\(later)")
    }

    func testTruncatedAndGarbageFilesAreErrors() throws {
        let data = try Data(contentsOf: Self.fixtures.appendingPathComponent("resnet18.onnx"))
        for cut in [1, 100, data.count / 2, data.count - 1] {
            XCTAssertThrowsError(try ONNXImporter.read(data.prefix(cut), file: "cut.onnx", name: "cut")) { error in
                XCTAssertTrue(error is ONNXImportError, "\(cut) bytes: \(error)")
            }
        }
        XCTAssertThrowsError(try ONNXImporter.read(Data("not a model at all".utf8), file: "text.onnx", name: "text"))
    }

    /// The dynamo exporter keeps weights in a data file beside the model: they are read from
    /// there, and a location outside the model's folder is refused.
    func testExternalDataIsReadFromTheModelsFolder() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("external-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: folder) }
        var model = try proto("resnet18")
        var blob = Data()
        for index in model.graph.initializer.indices where !model.graph.initializer[index].rawData.isEmpty {
            var tensor = model.graph.initializer[index]
            func entry(_ key: String, _ value: String) -> Onnx_StringStringEntryProto {
                var entry = Onnx_StringStringEntryProto()
                entry.key = key
                entry.value = value
                return entry
            }
            tensor.externalData = [entry("location", "weights.data"), entry("offset", "\(blob.count)"), entry("length", "\(tensor.rawData.count)")]
            blob.append(tensor.rawData)
            tensor.rawData = Data()
            tensor.dataLocation = .external
            model.graph.initializer[index] = tensor
        }
        try blob.write(to: folder.appendingPathComponent("weights.data"))
        let file = folder.appendingPathComponent("resnet18.onnx")
        try model.serializedData().write(to: file)
        let external = try ONNXImporter.load(contentsOf: file, name: "external").model
        XCTAssertEqual(external.nodes, try importFixture("resnet18").nodes)
        // A location that climbs out of the folder is refused.
        model.graph.initializer[0].externalData[0].value = "../weights.data"
        try model.serializedData().write(to: file)
        XCTAssertThrowsError(try ONNXImporter.load(contentsOf: file, name: "x")) { error in
            XCTAssertTrue("\(error)".contains("outside the model's folder"), "\(error)")
        }
    }

    func testSymbolicImageSizeNeedsSizeOption() throws {
        var model = try proto("resnet18")
        var dims = model.graph.input[0].type.tensorType.shape.dim
        dims[2].dimParam = "H"
        dims[3].dimParam = "W"
        model.graph.input[0].type.tensorType.shape.dim = dims
        let error = try XCTUnwrap(try importError(model))
        XCTAssertTrue(error.remedy?.contains("size=224") == true, error.description)
        let sized = try ONNXImporter.read(try model.serializedBytes(), file: "x.onnx", name: "x", options: ONNXImportOptions(imageSize: 64))
        XCTAssertEqual(sized.model.inputShape, [3, 64, 64])
    }

    /// A qsh export carries its normalization; importing it back gives the same model's logits.
    func testQshExportImportsBackWithItsNormalization() throws {
        let model = try importFixture("squeezeexcite")
        var normalized = model
        normalized.normalization = Normalization(mean: [0.4, 0.5, 0.6], std: [0.2, 0.25, 0.3])
        let (proto, _) = try ONNXExporter.makeModel(normalized)
        let back = try ONNXImporter.read(try proto.serializedBytes(), file: "round.onnx", name: "round")
        XCTAssertEqual(back.normalizationSource, .metadata)
        XCTAssertEqual(back.model.normalization, normalized.normalization)
        let input = try NumPyFile.read(contentsOf: Self.fixtures.appendingPathComponent("squeezeexcite.input.npy"))
        let batch = Tensor(shape: input.shape, data: input.values)
        XCTAssertLessThan(Self.relativeError(try ForwardPass.run(back.model, input: batch).data,
                                             try ForwardPass.run(model, input: batch).data), 1e-6)
    }

    func testConstantFoldingFollowsTheSpecification() throws {
        let shape = ONNXConstant(integers: [2, 3, 4])
        XCTAssertEqual(try ONNXFolding.gather(shape, indices: ONNXConstant(integers: [-1], shape: []), axis: 0).values, [4])
        XCTAssertEqual(try ONNXFolding.slice(ONNXConstant(integers: [0, 1, 2, 3, 4, 5]), starts: [-1], ends: [Int.min / 2], axes: nil, steps: [-2]).values,
                       [5, 3, 1])
        let matrix = ONNXConstant(integers: [1, 2, 3, 4, 5, 6], shape: [2, 3])
        XCTAssertEqual(try ONNXFolding.transpose(matrix, permutation: [1, 0]).values, [1, 4, 2, 5, 3, 6])
        XCTAssertEqual(try ONNXFolding.broadcast(matrix, ONNXConstant(integers: [10, 20, 30])) { $0 + $1 }.values, [11, 22, 33, 14, 25, 36])
        XCTAssertEqual(try ONNXFolding.concat([matrix, matrix], axis: 1).shape, [2, 6])
        XCTAssertEqual(try ONNXFolding.reshapedDimensions([2, 3, 4], target: [0, -1], allowZero: false), [2, 12])
        // The batch size is a symbol: it passes through arithmetic, and a use that needs it fails.
        let batch = ONNXConstant(shape: [1], values: [ONNXConstant.batchSymbol], isInteger: true)
        let product = try ONNXFolding.broadcast(batch, ONNXConstant(integers: [2])) { $0 * $1 }
        XCTAssertThrowsError(try product.integers("the shape")) { error in
            XCTAssertTrue("\(error)".contains("batch size") || (error as? ONNXFolding.Problem)?.problem.contains("batch size") == true)
        }
    }
}

/// What every command needs from an imported graph beyond its logits.
final class ImportedGraphQuantizationTests: XCTestCase {
    func testConcatenationInputsShareOneCalibratedRange() throws {
        var model = try ONNXImporter.load(contentsOf: ONNXImportTests.fixtures.appendingPathComponent("denseblock.onnx"), name: "dense").model
        try ActivationQuantization.quantize(&model, with: ActivationQuantizer(bits: 8, scheme: .asymmetric))
        let input = try NumPyFile.read(contentsOf: ONNXImportTests.fixtures.appendingPathComponent("denseblock.input.npy"))
        let statistics = try XCTUnwrap(try ActivationCalibration.collect(model, batchCount: 1) { _ in Tensor(shape: input.shape, data: input.values) })
        try ActivationCalibration.apply(.minMax, statistics: statistics, to: &model)
        let base = ActivationQuantization.removingQuantizers(model)
        let quantizers = ActivationQuantization.quantizers(in: model)
        for concat in base.nodes where concat.operation == .concat {
            let ranges = ([concat.name] + concat.inputs.map { base.nodes[$0].name }).compactMap { quantizers[$0]?.range }
            XCTAssertGreaterThan(ranges.count, 1, concat.name)
            XCTAssertEqual(Set(ranges.map { [$0.lowerBound, $0.upperBound] }).count, 1, "\(concat.name): \(ranges)")
        }
    }
}
