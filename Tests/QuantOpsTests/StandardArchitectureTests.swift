import Foundation
@testable import QuantOps
import XCTest

/// Reduced-width checkpoints of the standard architectures with PyTorch logits
/// (scripts/make-architecture-fixtures.py): recognition, the built graphs against PyTorch, key
/// round trips and the errors for checkpoints that do not fit.
final class StandardArchitectureTests: XCTestCase {
    static let directory = EngineFixtures.packageRoot.appendingPathComponent("Tests/QuantOpsTests/Fixtures/architectures")

    /// File name, the architecture it holds, and how many times each input pixel is repeated.
    static let fixtures: [(name: String, architecture: StandardArchitecture, upsample: Int)] = [
        ("resnet18", .resnet18, 1), ("resnet34", .resnet34, 1), ("resnet50", .resnet50, 1),
        ("cifar-resnet18", .cifarResNet18, 1), ("vgg16bn", .vgg16bn, 4), ("cifar-vgg16bn", .cifarVGG16bn, 1),
        ("mobilenetv2", .mobilenetV2, 1), ("mobilenetv2-narrow", .mobilenetV2, 1),
    ]

    func checkpoint(_ name: String) throws -> StateDict {
        try CheckpointReader.read(contentsOf: Self.directory.appendingPathComponent(name + ".pth"))
    }

    /// The stored images, each pixel repeated `upsample` x `upsample` times as the script does.
    func input(_ name: String, upsample: Int) throws -> Tensor {
        let stored = try NumPyFile.read(contentsOf: Self.directory.appendingPathComponent(name + ".input.npy"))
        let (n, c, h, w) = (stored.shape[0], stored.shape[1], stored.shape[2], stored.shape[3])
        let (outH, outW) = (h * upsample, w * upsample)
        var data = [Float](repeating: 0, count: n * c * outH * outW)
        for plane in 0..<(n * c) {
            for y in 0..<outH {
                for x in 0..<outW {
                    data[(plane * outH + y) * outW + x] = stored.values[(plane * h + y / upsample) * w + x / upsample]
                }
            }
        }
        return Tensor(shape: [n, c, outH, outW], data: data)
    }

    func testRecognisesEveryFixture() throws {
        for fixture in Self.fixtures {
            XCTAssertEqual(StandardArchitecture.recognise(try checkpoint(fixture.name)), fixture.architecture, fixture.name)
        }
    }

    func testLogitsMatchPyTorch() throws {
        for fixture in Self.fixtures {
            let model = try StandardArchitecture.build(from: try checkpoint(fixture.name), name: fixture.name)
            XCTAssertEqual(model.inputShape, fixture.architecture.inputShape)
            XCTAssertEqual(model.normalization, fixture.architecture.normalization)
            let images = try input(fixture.name, upsample: fixture.upsample)
            let reference = try NumPyFile.read(contentsOf: Self.directory.appendingPathComponent(fixture.name + ".logits.npy"))
            // Node by node with the reference kernels (an observer turns fusion off), then compiled.
            let unfused = try ForwardPass.reference(model, input: images)
            let compiled = try CompiledModel(model).logits(images)
            XCTAssertEqual(unfused.shape, reference.shape, fixture.name)
            XCTAssertEqual(compiled.shape, reference.shape, fixture.name)
            let unfusedError = EngineFixtures.relativeError(unfused.data, reference.values)
            let compiledError = EngineFixtures.relativeError(compiled.data, reference.values)
            print("\(fixture.name): relative error node by node \(unfusedError), compiled \(compiledError)")
            XCTAssertLessThan(unfusedError, 1e-4, fixture.name)
            XCTAssertLessThan(compiledError, 1e-4, fixture.name)
        }
    }

    func testStateDictRoundTripsKeys() throws {
        for fixture in Self.fixtures {
            let original = try checkpoint(fixture.name)
            let saved = try StandardArchitecture.build(fixture.architecture, from: original, name: fixture.name).stateDict()
            XCTAssertEqual(saved.keys, original.keys, fixture.name)
            for key in original.keys {
                XCTAssertEqual(saved[key]?.tensor, original[key]?.tensor, "\(fixture.name): \(key)")
            }
        }
    }

    /// A checkpoint saved after 'fold bn' (biases, no batch norms) is recognised and loads again.
    func testFoldedCheckpointLoads() throws {
        for fixture in Self.fixtures {
            var model = try StandardArchitecture.build(fixture.architecture, from: try checkpoint(fixture.name), name: fixture.name)
            XCTAssertGreaterThan(try ModelTransforms.foldBatchNorm(&model), 0, fixture.name)
            let saved = model.stateDict()
            XCTAssertEqual(StandardArchitecture.recognise(saved), fixture.architecture, fixture.name)
            let reloaded = try StandardArchitecture.build(from: saved, name: fixture.name)
            XCTAssertEqual(reloaded.stateDict().keys, saved.keys, fixture.name)
            let images = try input(fixture.name, upsample: fixture.upsample)
            let error = EngineFixtures.relativeError(try CompiledModel(reloaded).logits(images).data,
                                                     try CompiledModel(model).logits(images).data)
            XCTAssertLessThan(error, 1e-5, fixture.name)
        }
    }

    func testNodeNamesAreUnique() throws {
        for fixture in Self.fixtures {
            let model = try StandardArchitecture.build(fixture.architecture, from: try checkpoint(fixture.name), name: fixture.name)
            XCTAssertEqual(Set(model.nodes.map(\.name)).count, model.nodes.count, fixture.name)
        }
    }

    func testMissingTensorIsNamed() throws {
        var stateDict = try checkpoint("resnet18")
        stateDict["layer2.1.bn2.running_var"] = nil
        XCTAssertEqual(StandardArchitecture.recognise(stateDict), .resnet18)
        XCTAssertThrowsError(try StandardArchitecture.build(from: stateDict, name: "r")) { error in
            XCTAssertEqual(error as? StandardArchitectureError, .missingTensor(key: "layer2.1.bn2.running_var", expected: "8"))
            XCTAssertTrue(String(describing: error).contains("layer2.1.bn2.running_var"))
        }
        var mobile = try checkpoint("mobilenetv2")
        mobile["features.5.conv.1.0.weight"] = nil
        XCTAssertThrowsError(try StandardArchitecture.build(.mobilenetV2, from: mobile, name: "m"))
    }

    func testUnexpectedTensorsAreReported() throws {
        var stateDict = try checkpoint("mobilenetv2")
        stateDict["extra.weight"] = .init(tensor: Tensor(zeros: [2, 2]))
        XCTAssertEqual(StandardArchitecture.recognise(stateDict), .mobilenetV2)
        XCTAssertThrowsError(try StandardArchitecture.build(from: stateDict, name: "m")) { error in
            XCTAssertEqual(error as? StandardArchitectureError, .unexpectedTensors(architecture: "mobilenetv2", keys: ["extra.weight"]))
        }
        // A ResNet-34 checkpoint read as a ResNet-18 leaves its third blocks over.
        XCTAssertThrowsError(try StandardArchitecture.build(.resnet18, from: try checkpoint("resnet34"), name: "r")) { error in
            guard case .unexpectedTensors(_, let keys)? = error as? StandardArchitectureError else {
                return XCTFail("\(error)")
            }
            XCTAssertTrue(keys.contains("layer1.2.conv1.weight"), "\(keys)")
        }
    }

    func testWrongShapeIsNamed() throws {
        var stateDict = try checkpoint("cifar-vgg16bn")
        stateDict["features.4.running_mean"] = .init(tensor: Tensor(zeros: [3]))
        XCTAssertThrowsError(try StandardArchitecture.build(from: stateDict, name: "v")) { error in
            XCTAssertEqual(error as? StandardArchitectureError, .shapeMismatch(key: "features.4.running_mean", expected: "2", actual: [3]))
        }
    }

    func testUnrecognisedCheckpointNamesEveryArchitectureTried() throws {
        // A CIFAR ResNet-20 (akamaster): 3x3 stem, three stages.
        var stateDict = StateDict()
        stateDict["conv1.weight"] = .init(tensor: Tensor(zeros: [16, 3, 3, 3]))
        stateDict["layer1.0.conv1.weight"] = .init(tensor: Tensor(zeros: [16, 16, 3, 3]))
        stateDict["linear.weight"] = .init(tensor: Tensor(zeros: [10, 64]))
        XCTAssertNil(StandardArchitecture.recognise(stateDict))
        XCTAssertThrowsError(try StandardArchitecture.build(from: stateDict, name: "x")) { error in
            guard case .unrecognised(let attempts)? = error as? StandardArchitectureError else { return XCTFail("\(error)") }
            XCTAssertEqual(attempts.map(\.architecture), StandardArchitecture.allCases.map(\.rawValue))
            let misfits = Dictionary(uniqueKeysWithValues: attempts.map { ($0.architecture, $0.misfit) })
            XCTAssertEqual(misfits["resnet18"], "conv1.weight: expected ?x3x7x7, the checkpoint has 16x3x3x3")
            XCTAssertEqual(misfits["cifar-resnet18"], "layer1.1.conv1.weight: layer1 has 1 blocks, cifar-resnet18 has 2")
            XCTAssertEqual(misfits["vgg16bn"], "features.0.weight: not in the checkpoint (expected ?x3x3x3)")
            XCTAssertTrue(String(describing: error).contains("mobilenetv2 (features.0.0.weight"), "\(error)")
        }
        // Layer counts tell the depths apart.
        XCTAssertEqual(StandardArchitecture.misfit(of: .resnet18, in: try checkpoint("resnet34")),
                       "layer1.2.conv1.weight: layer1 has 3 blocks, resnet18 has 2")
        XCTAssertEqual(StandardArchitecture.misfit(of: .resnet34, in: try checkpoint("resnet50")),
                       "layer1.0.conv3.weight: a Bottleneck's third convolution; this architecture has BasicBlocks")
    }

    /// The max-pools of VGG and the strides of MobileNetV2 come from the keys, not a fixed list.
    func testLayoutsFollowTheCheckpoint() throws {
        let vgg = try StandardArchitecture.build(.vgg16bn, from: try checkpoint("vgg16bn"), name: "v")
        let pools = vgg.nodes.filter { if case .maxPool = $0.operation { return true } else { return false } }.map(\.name)
        XCTAssertEqual(pools, ["features.6", "features.13", "features.23", "features.33", "features.43"])
        for name in ["mobilenetv2", "mobilenetv2-narrow"] {
            let model = try StandardArchitecture.build(.mobilenetV2, from: try checkpoint(name), name: name)
            let strided = model.nodes.compactMap { node -> String? in
                guard case .conv(let conv) = node.operation, conv.stride.0 == 2 else { return nil }
                return node.name
            }
            XCTAssertEqual(strided, ["features.0.0", "features.2.conv.1.0", "features.4.conv.1.0",
                                     "features.7.conv.1.0", "features.14.conv.1.0"], name)
        }
        let narrow = try StandardArchitecture.build(.mobilenetV2, from: try checkpoint("mobilenetv2-narrow"), name: "n")
        XCTAssertNotNil(narrow.nodeIndex(named: "features.1.add"), "stride 1 and equal widths: torchvision adds the input")
    }
}
