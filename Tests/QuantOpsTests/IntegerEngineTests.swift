@testable import QuantOps
import XCTest

/// The int8 engine against the fake-quant simulation: u8 codes round as the quantizer rounds,
/// the plan keeps in float exactly what integers cannot run safely, and logits agree.
final class IntegerEngineTests: XCTestCase {
    /// The tiny residual network of the export tests (stem, a block with an option-A shortcut,
    /// global pooling, classifier), BN folded, `weights` on every layer, activations quantized
    /// with fixed ranges.
    static func model(weights: WeightQuantizer, activationBits: Int = 8, scheme: QuantizationScheme = .asymmetric,
                      foldBatchNorm: Bool = true) throws -> Model {
        var model = ONNXExportTests.residualModel()
        if foldBatchNorm { try ModelTransforms.foldBatchNorm(&model) }
        try ModelTransforms.quantize(&model, layers: Array(1...model.weightLayerNodes.count), with: weights)
        try ActivationQuantization.quantize(&model, with: ActivationQuantizer(bits: activationBits, scheme: scheme))
        var ranges: [String: ClosedRange<Float>] = [:]
        for point in ActivationQuantization.points(in: model) { ranges[point.name] = -1.5...4 }
        ActivationQuantization.setRanges(&model, ranges)
        return model
    }

    static let sevenBit = WeightQuantizer.uniform(bits: 7, scheme: .symmetric, granularity: .channel)
    static let eightBit = WeightQuantizer.uniform(bits: 8, scheme: .symmetric, granularity: .channel)

    func testCodesRoundExactlyAsTheQuantizer() throws {
        var random = KernelTests.SplitMix(state: 5)
        var values = (0..<4000).map { _ in random.next() * 6 }
        // Ties between codes, both ends of the range and beyond it.
        values += [0, -1.5, 4, -100, 100, 1e-9, -1e-9] + (0..<64).map { Float($0) * 5.5 / 255 - 1.5 }
        let input = Tensor(shape: [values.count], data: values)
        for (bits, scheme) in [(8, QuantizationScheme.asymmetric), (8, .symmetric), (4, .asymmetric), (7, .symmetric), (2, .asymmetric)] {
            let quantizer = ActivationQuantizer(bits: bits, scheme: scheme, range: -1.5...4)
            let grid = try XCTUnwrap(ByteGrid(quantizer), "\(bits)-bit \(scheme)")
            let simulated = try quantizer.apply(input, at: "test")
            for (value, expected) in zip(values, simulated.data) {
                let code = grid.code(value)
                XCTAssertTrue((grid.lower...grid.upper).contains(Int32(code)), "\(bits)-bit \(scheme): \(value) -> \(code)")
                XCTAssertEqual(grid.value(code), expected, "\(bits)-bit \(scheme): \(value)")
            }
        }
        let grid = try XCTUnwrap(ByteGrid(ActivationQuantizer(bits: 8, scheme: .asymmetric, range: -1.5...4)))
        XCTAssertEqual(grid.value(grid.code(.nan)), 0, "NaN has no code: it becomes 0 rather than a trap")
        XCTAssertEqual(grid.code(.infinity), UInt8(grid.upper))
        XCTAssertNil(ByteGrid(ActivationQuantizer(bits: 16, scheme: .asymmetric, range: -1...1)), "wider than a byte")
        XCTAssertNil(ByteGrid(ActivationQuantizer(bits: 8, scheme: .asymmetric)), "not calibrated")
    }

    func testPlanKeepsLayersThatCouldSaturateInFloatWithoutVNNI() throws {
        let model = BiasQuantization.simulated(try Self.model(weights: Self.eightBit))
        let withoutVNNI = IntegerPlan(model, vnni: false)
        XCTAssertEqual(withoutVNNI.layers.map(\.name), ["conv1", "layer.conv", "linear"])
        for layer in withoutVNNI.layers.prefix(2) {
            guard case .float(let reason) = layer.placement else { return XCTFail("\(layer.name) runs in int8") }
            XCTAssertTrue(reason.contains("without VNNI") && reason.contains("7-bit weights"), reason)
        }
        XCTAssertEqual(withoutVNNI.layers[2].placement, .float("fully connected layers run in float"))
        XCTAssertEqual(IntegerPlan(model, vnni: true).integerLayerCount, 2, "with VNNI, 8-bit weights are safe")
        // 7-bit weights leave room for any pair of 8-bit input codes: 255 * (63 + 63) < 32768.
        let sevenBit = IntegerPlan(BiasQuantization.simulated(try Self.model(weights: Self.sevenBit)), vnni: false)
        XCTAssertEqual(sevenBit.integerLayerCount, 2)
        // The block's chain stores its u8 output for the quantizer after it, and adds the u8 shortcut.
        let chain = try XCTUnwrap(sevenBit.chains[sevenBit.layers[1].node])
        XCTAssertNotNil(chain.output)
        XCTAssertNotNil(chain.residual)
        XCTAssertEqual(chain.clampUpper, .infinity)
    }

    func testPairBoundIsExact() {
        // 255 * 128 = 32640 fits; 255 * 129 = 32895 does not; the sign that matters is each's own.
        XCTAssertNil(IntegerChain.pairSaturation([64, 64, -128, 0], perChannel: 4, inputMaximum: 255))
        XCTAssertNotNil(IntegerChain.pairSaturation([64, 65, 0, 0], perChannel: 4, inputMaximum: 255))
        XCTAssertNotNil(IntegerChain.pairSaturation([-65, -64, 127, 0], perChannel: 4, inputMaximum: 255))
        XCTAssertNil(IntegerChain.pairSaturation([127, 127, -127, -127], perChannel: 4, inputMaximum: 127), "7-bit inputs")
        // Pairs never span two output channels.
        XCTAssertNil(IntegerChain.pairSaturation([100, 0, 100, 0], perChannel: 2, inputMaximum: 255))
    }

    /// Logits of the int8 engine and of the float simulation on the same batch.
    func compare(_ model: Model, vnni: Bool = false, expectIntegerLayers: Int,
                 file: StaticString = #filePath, line: UInt = #line) throws -> (Tensor, Tensor) {
        var random = KernelTests.SplitMix(state: 17)
        let input = random.tensor([6, 3, 12, 12])
        let integer = try CompiledModel(model, arithmetic: .int8, vnni: vnni)
        XCTAssertEqual(integer.integerPlan?.integerLayerCount, expectIntegerLayers, file: file, line: line)
        let simulated = try CompiledModel(model).logits(input)
        let fast = try integer.logits(input)
        XCTAssertEqual(fast.shape, simulated.shape, file: file, line: line)
        return (fast, simulated)
    }

    func testIntegerLogitsEqualTheSimulation() throws {
        let cases: [(String, Model)] = [
            ("7-bit weights, 8-bit asymmetric activations", try Self.model(weights: Self.sevenBit)),
            ("symmetric activations (codes shifted by 128)", try Self.model(weights: Self.sevenBit, scheme: .symmetric)),
            ("4-bit activations (clamped to 0...15, not 0...255)", try Self.model(weights: Self.sevenBit, activationBits: 4)),
            ("ternary weights", try Self.model(weights: .ternary)),
            ("batch norm kept: folded into the output scales", try Self.model(weights: Self.sevenBit, foldBatchNorm: false)),
        ]
        for (label, model) in cases {
            let (fast, simulated) = try compare(model, expectIntegerLayers: 2)
            // Only a value on the edge of a rounding step can move, by one step.
            XCTAssertLessThan(EngineFixtures.relativeError(fast.data, simulated.data), 1e-3, label)
        }
    }

    func testLayersThatStayFloatGiveTheSimulationsValues() throws {
        // Planned for a CPU without VNNI, 8-bit weights keep every layer in float: the engine then
        // quantizes and dequantizes activations, which must give the simulation's floats.
        let (fast, simulated) = try compare(try Self.model(weights: Self.eightBit), expectIntegerLayers: 0)
        XCTAssertLessThan(EngineFixtures.relativeError(fast.data, simulated.data), 1e-6)
    }

    func testResNet20MatchesTheSimulationOnRealImages() throws {
        var model = try EngineFixtures.zooModel("resnet20")
        try ModelTransforms.foldBatchNorm(&model)
        try ModelTransforms.quantize(&model, layers: Array(1...model.weightLayerNodes.count), with: Self.sevenBit)
        try ActivationQuantization.quantize(&model, with: ActivationQuantizer(bits: 8, scheme: .asymmetric))
        let dataset = try EngineFixtures.testSet()
        let calibration = dataset.batch(Array(1000..<1256), normalization: model.normalization)
        let statistics = try XCTUnwrap(ActivationCalibration.collect(model, batchCount: 1, batch: { _ in calibration }))
        try ActivationCalibration.apply(.minMax, statistics: statistics, to: &model)
        let images = Array(0..<500)
        let simulated = try Evaluation.run(model: model, dataset: dataset, limit: images.count)
        let integer = try Evaluation.run(model: model, dataset: dataset, limit: images.count, arithmetic: .int8)
        let agreeing = zip(simulated.predictions, integer.predictions).filter { $0 == $1 }.count
        XCTAssertGreaterThanOrEqual(agreeing, 497, "same class for at least 99.4% of the images")
        XCTAssertEqual(integer.top1, simulated.top1, accuracy: 0.41, "within 2 images of 500")
        XCTAssertEqual(try CompiledModel(model, arithmetic: .int8, vnni: false).integerPlan?.integerLayerCount, 19)
    }
}
