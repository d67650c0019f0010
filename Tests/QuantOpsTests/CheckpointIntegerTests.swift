@testable import QuantOps
import XCTest

/// `save ... int8=true` files: integer codes with scales and zero points, read back into the
/// state they were written from.
final class CheckpointIntegerTests: XCTestCase {
    /// resnet20 with a different precision on each stage, through a safetensors file.
    func testIntegerCheckpointLoadsBackIntoTheSameState() throws {
        var model = try EngineFixtures.zooModel("resnet20")
        let count = model.weightLayerNodes.count
        try ModelTransforms.quantize(&model, layers: [1], with: .uniform(bits: 8, scheme: .asymmetric, granularity: .tensor))
        try ModelTransforms.quantize(&model, layers: Array(2...7), with: .uniform(bits: 8, scheme: .symmetric, granularity: .channel))
        try ModelTransforms.quantize(&model, layers: Array(8...13), with: .ternary)
        try ModelTransforms.quantize(&model, layers: Array(14...17), with: .uniform(bits: 4, scheme: .dorefa, granularity: .tensor))
        try ModelTransforms.quantize(&model, layers: [18, 19], with: .uniform(bits: 12, scheme: .symmetric, granularity: .channel))
        // Layer 20 (the classifier) stays float.

        let (dict, metadata) = try IntegerCheckpoint.stateDict(of: model)
        let conv = "layer1.0.conv1"
        XCTAssertEqual(dict[conv + ".weight"]?.elementType, .int8)
        XCTAssertEqual(dict[conv + ".weight_scale"]?.tensor.shape, [16], "per channel")
        XCTAssertEqual(dict[conv + ".weight_zero_point"]?.tensor.data, [Float](repeating: 0, count: 16))
        XCTAssertEqual(dict["conv1.weight_scale"]?.tensor.shape, [], "per tensor: a 0-d scale")
        XCTAssertEqual(dict["layer3.2.conv1.weight"]?.elementType, .int32, "12-bit codes")
        XCTAssertNil(dict["linear.weight_scale"], "float layers stay float")
        XCTAssertTrue(dict[conv + ".weight"]!.tensor.data.allSatisfy { $0 == $0.rounded() && abs($0) <= 127 })

        let file = FileManager.default.temporaryDirectory.appendingPathComponent("qsh-int8-\(UUID().uuidString).safetensors")
        defer { try? FileManager.default.removeItem(at: file) }
        try SafeTensorsWriter.write(dict, to: file, metadata: metadata)
        let checkpoint = try CheckpointReader.readCheckpoint(contentsOf: file)
        var loadedDict = checkpoint.stateDict
        let precisions = try IntegerCheckpoint.dequantize(&loadedDict, metadata: checkpoint.metadata, file: file.lastPathComponent)
        XCTAssertEqual(precisions.count, count - 1)
        var loaded = try ModelZoo.build(ModelZoo.entry(named: "resnet20"), from: loadedDict)
        try IntegerCheckpoint.apply(precisions, to: &loaded, file: file.lastPathComponent)

        for (original, restored) in zip(model.weightLayers, loaded.weightLayers) {
            XCTAssertEqual(restored.precision, original.precision, original.name)
            let a = weights(model, original.nodeIndex)
            let b = weights(loaded, restored.nodeIndex)
            // Codes times scales give the fake-quantized values back; only DoReFa's half-step
            // zero point is computed in another order, within float rounding.
            for (x, y) in zip(a, b) { XCTAssertEqual(x, y, accuracy: 1e-6 * max(1, abs(x)), original.name) }
        }
    }

    func weights(_ model: Model, _ index: Int) -> [Float] {
        switch model.nodes[index].operation {
        case .conv(let conv): return conv.weight.data
        case .linear(let linear): return linear.weight.data
        default: return []
        }
    }

    func testDamagedPrecisionsAreNamedErrors() throws {
        var dict = StateDict()
        dict["conv.weight"] = .init(tensor: Tensor(shape: [2, 1, 1, 1], data: [1, -1]), elementType: .int8)
        for metadata in [["qsh_weight_precisions": "[1"],
                         ["qsh_weight_precisions": "{\"conv\": {\"kind\": \"ternary\"}}"],
                         ["qsh_weight_precisions": "{\"conv\": {\"kind\": \"ternary\", \"alpha\": 0.5}}"]] {
            var copy = dict
            XCTAssertThrowsError(try IntegerCheckpoint.dequantize(&copy, metadata: metadata, file: "x.safetensors")) { error in
                XCTAssertTrue("\(error)".hasPrefix("x.safetensors: "), "\(error)")
            }
        }
    }
}
