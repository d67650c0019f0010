import Foundation
import QuantOps
import XCTest

final class ZooTests: XCTestCase {
    func testEntriesKnowFilesChecksumsAndNormalization() throws {
        let resnet20 = try ModelZoo.entry(named: "resnet20")
        XCTAssertEqual(resnet20.fileName, "resnet20-12fca82f.th")
        XCTAssertEqual(resnet20.sha256?.prefix(8), "12fca82f")
        XCTAssertEqual(resnet20.downloadURL?.absoluteString,
                       "https://github.com/akamaster/pytorch_resnet_cifar10/raw/master/pretrained_models/resnet20-12fca82f.th")
        XCTAssertNil(try ModelZoo.entry(named: "resnet110").sha256)
        let merging = try ModelZoo.entry(named: "nm-resnet56")
        XCTAssertNil(merging.downloadURL)
        XCTAssertEqual(merging.normalization.mean, [0.4914, 0.4822, 0.4465])
        XCTAssertThrowsError(try ModelZoo.entry(named: "vgg16")) { error in
            XCTAssertTrue("\(error)".contains("resnet56"), "\(error)")
        }
    }

    func testResNet20GraphNamesAndLayerNumbering() throws {
        let model = try EngineFixtures.zooModel("resnet20")
        let layers = model.weightLayers
        XCTAssertEqual(layers.count, 20)
        XCTAssertEqual(layers.first?.name, "conv1")
        XCTAssertEqual(layers[1].name, "layer1.0.conv1")
        XCTAssertEqual(layers.last?.name, "linear")
        XCTAssertEqual(layers.last?.kernelShape, [10, 64])
        XCTAssertEqual(layers.last?.parameterCount, 650)
        XCTAssertEqual(layers[7].name, "layer2.0.conv1")
        XCTAssertEqual(layers[7].kernelShape, [32, 16, 3, 3])
        // 0.27M parameters, as the ResNet paper counts ResNet-20.
        XCTAssertEqual(model.parameterCount, 269_722)
    }

    func testNeuronMergingShortcutRunsAfterTheBlockConvolutions() throws {
        let model = try EngineFixtures.zooModel("nm-resnet56")
        let names = model.weightLayers.map(\.name)
        XCTAssertEqual(names.count, 56 + 2)
        let conv2 = try XCTUnwrap(names.firstIndex(of: "layer2.0.conv2"))
        XCTAssertEqual(names[conv2 - 1], "layer2.0.conv1")
        XCTAssertEqual(names[conv2 + 1], "layer2.0.downsample.0")
        XCTAssertEqual(names.last, "fc")
    }

    func testStateDictRoundTripsThroughTheBuilder() throws {
        for name in ["resnet20", "nm-resnet56"] {
            let entry = try ModelZoo.entry(named: name)
            let original = try CheckpointReader.read(contentsOf: EngineFixtures.modelsDirectory.appendingPathComponent(entry.fileName))
            let model = try ModelZoo.build(entry, from: original)
            let exported = model.stateDict()
            XCTAssertEqual(Set(exported.keys), Set(original.keys), name)
            for key in original.keys {
                XCTAssertEqual(exported[key]?.tensor, original[key]?.tensor, key)
            }
            if name == "nm-resnet56" {
                XCTAssertEqual(exported["bn1.num_batches_tracked"]?.elementType, .int64)
            }
            XCTAssertEqual(try ModelZoo.build(entry, from: exported), model)
        }
    }

    func testBuilderNamesTheOffendingTensor() throws {
        let resnet20 = try ModelZoo.entry(named: "resnet20")
        let model = try EngineFixtures.zooModel("resnet20")
        var wrongShape = model.stateDict()
        wrongShape["layer2.0.conv1.weight"] = .init(tensor: Tensor(zeros: [16, 16, 3, 3]))
        XCTAssertThrowsError(try ModelZoo.build(resnet20, from: wrongShape)) { error in
            XCTAssertEqual("\(error)", "layer2.0.conv1.weight: expected 32x16x3x3, checkpoint has 16x16x3x3")
        }
        var missing = model.stateDict()
        missing["layer3.2.bn2.running_var"] = nil
        XCTAssertThrowsError(try ModelZoo.build(resnet20, from: missing)) { error in
            XCTAssertTrue("\(error)".hasPrefix("layer3.2.bn2.running_var: expected 64"), "\(error)")
        }
        var extra = model.stateDict()
        extra["layer4.0.conv1.weight"] = .init(tensor: Tensor(zeros: [1]))
        XCTAssertThrowsError(try ModelZoo.build(resnet20, from: extra)) { error in
            XCTAssertTrue("\(error)".contains("layer4.0.conv1.weight"), "\(error)")
        }
        // A deeper network's checkpoint is refused by the shallower architecture.
        let resnet32 = try EngineFixtures.zooModel("resnet32")
        XCTAssertThrowsError(try ModelZoo.build(resnet20, from: resnet32.stateDict()))
    }

    func testExecutorReportsShapeErrorsByNodeAndFreesNothingItStillNeeds() throws {
        let model = try EngineFixtures.zooModel("resnet20")
        XCTAssertThrowsError(try ForwardPass.logits(model, input: Tensor(zeros: [1, 1, 32, 32]))) { error in
            XCTAssertTrue("\(error)".contains("'conv1'"), "\(error)")
        }
        var outputs: [Int: [Int]] = [:]
        _ = try ForwardPass.reference(model, input: Tensor(zeros: [2, 3, 32, 32])) { index, tensor in outputs[index] = tensor.shape }
        XCTAssertEqual(outputs.count, model.nodes.count)
        XCTAssertEqual(outputs[model.nodeIndex(named: "layer3.0.shortcut")!], [2, 64, 8, 8])
        XCTAssertEqual(outputs[model.nodes.count - 1], [2, 10])
    }
}
