import Interpreter
import QuantOps
import XCTest

/// The quantization context belongs to one load: a new load starts it afresh, changes within the
/// load (quantizing, `undo`, `reset`) keep it, and the float model the commands compare with,
/// distill from and fine-tune against is the one of the current load.
final class QuantizationContextTests: XCTestCase {
    /// A one-layer model whose weights are all `value`: distinct values tell loads apart.
    static func tinyModel(_ value: Float) -> Model {
        ModelHistoryTests.tinyModel(value)
    }

    func harness(loading value: Float) -> RecipeHarness {
        let harness = RecipeHarness()
        harness.session.install(ModelState(model: Self.tinyModel(value), origin: "tiny"))
        return harness
    }

    func testANewLoadStartsTheContextAfreshAndKeepsTheCaches() throws {
        let harness = harness(loading: 1)
        let store = CalibrationStore(directory: FileManager.default.temporaryDirectory)
        harness.session.quantization.calibrationStore = store
        XCTAssertEqual(harness.run("quantize weights bits=4\nkeep layer 1 float"), .success, harness.errors.text)
        let firstLoad = harness.session.quantization.load
        XCTAssertEqual(firstLoad, harness.session.models.loadNumber)
        XCTAssertEqual(harness.session.quantization.keptFloat, ["fc"])
        XCTAssertEqual(harness.session.quantization.floatReference, Self.tinyModel(1))

        // The same weights loaded again are a new load all the same: no fingerprint decides.
        harness.session.install(ModelState(model: Self.tinyModel(1), origin: "tiny"))
        XCTAssertEqual(harness.session.quantization.load, firstLoad + 1)
        XCTAssertEqual(harness.session.quantization.load, harness.session.models.loadNumber)
        XCTAssertEqual(harness.session.quantization.keptFloat, [])
        XCTAssertNil(harness.session.quantization.floatReference)
        XCTAssertEqual(harness.session.quantization.calibrationStore?.directory, store.directory)
        XCTAssertEqual(harness.run("quantize weights bits=4"), .success, harness.errors.text)
        XCTAssertTrue(harness.session.current?.model.hasQuantizedWeights == true, "no layer is kept float after the new load")
    }

    func testUndoAndResetWithinALoadKeepTheContext() throws {
        let harness = harness(loading: 1)
        XCTAssertEqual(harness.run("keep layer 1 float\nquantize weights bits=4"), .success, harness.errors.text)
        XCTAssertTrue(harness.output.text.contains("kept float: 1"), harness.output.text)
        let load = harness.session.quantization.load
        XCTAssertEqual(harness.run("undo 2\nreset\nquantize weights bits=8"), .success, harness.errors.text)
        XCTAssertEqual(harness.session.quantization.load, load)
        XCTAssertEqual(harness.session.quantization.keptFloat, ["fc"])
        XCTAssertFalse(try XCTUnwrap(harness.session.current).model.hasQuantizedWeights, "layer 1 stays kept float")
    }

    func testTheFloatReferenceIsTheFloatModelOfTheCurrentLoad() throws {
        let harness = harness(loading: 1)
        XCTAssertEqual(harness.run("quantize weights bits=4"), .success, harness.errors.text)
        XCTAssertEqual(try harness.session.quantization.floatReference(in: harness.session.models), Self.tinyModel(1))

        // A second load, quantized by a command that takes no reference of its own: distill
        // (from=float) and finetune must see this load's float model, not the first one's.
        harness.session.install(ModelState(model: Self.tinyModel(3), origin: "tiny"))
        XCTAssertEqual(harness.run("ternary layer 1"), .success, harness.errors.text)
        XCTAssertTrue(try XCTUnwrap(harness.session.current).model.hasQuantizedWeights)
        XCTAssertEqual(try harness.session.quantization.floatReference(in: harness.session.models), Self.tinyModel(3))

        // Once quantized within the load, the model before quantization stays the reference.
        XCTAssertEqual(harness.run("reset\nquantize weights bits=4\nternary layer 1"), .success, harness.errors.text)
        XCTAssertEqual(try harness.session.quantization.floatReference(in: harness.session.models), Self.tinyModel(3))
    }

    func testEachSweepItemStartsFromTheContextBeforeTheSweep() throws {
        let harness = harness(loading: 1)
        XCTAssertEqual(harness.run("""
            sweep bits in 4, 8 {
                quantize weights bits=$bits
                keep layer 1 float
            }
            """), .success, harness.errors.text)
        // The second item quantized layer 1: the first item's 'keep' did not carry over.
        XCTAssertEqual(harness.output.text.components(separatedBy: "weights 8-bit symmetric per channel: 1 layers").count, 2,
                       harness.output.text)
        XCTAssertEqual(harness.session.quantization.keptFloat, [], "the sweep restores the context after its last item")
        XCTAssertNil(harness.session.quantization.floatReference)
    }
}
