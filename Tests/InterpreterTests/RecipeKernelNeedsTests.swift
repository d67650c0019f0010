import Interpreter
import XCTest

/// What a recipe's text says about its kernels before it runs: the instruction set is chosen
/// from it once, before the first kernel.
final class RecipeKernelNeedsTests: XCTestCase {
    func testFloatInferenceRecipes() {
        XCTAssertTrue(RecipeRunner.runsOnlyFloatInference("load resnet20\nfold bn\neval cifar10"))
        XCTAssertTrue(RecipeRunner.runsOnlyFloatInference("load resnet20; eval cifar10 engine=float"))
        XCTAssertTrue(RecipeRunner.runsOnlyFloatInference("set engine=\"float\"\nfor b in 4..8 {\n  quantize weights bits=$b\n  eval cifar10\n}"))
        XCTAssertTrue(RecipeRunner.runsOnlyFloatInference("# distill finetune engine=int8 in a comment\nload resnet20"))
    }

    func testRecipesThatNeedOtherKernels() {
        XCTAssertFalse(RecipeRunner.runsOnlyFloatInference("load resnet20; eval cifar10 engine=int8"))
        XCTAssertFalse(RecipeRunner.runsOnlyFloatInference("set engine=int8\neval cifar10"))
        XCTAssertFalse(RecipeRunner.runsOnlyFloatInference("let e = float\neval cifar10 engine=$e"), "a variable could hold int8")
        XCTAssertFalse(RecipeRunner.runsOnlyFloatInference("for i in 1..2 {\n  layers engine=int8\n}"), "inside a loop")
        XCTAssertFalse(RecipeRunner.runsOnlyFloatInference("load resnet20\ndistill samples=8 steps=1"))
        XCTAssertFalse(RecipeRunner.runsOnlyFloatInference("load resnet20\nfinetune ait epochs=1"))
        XCTAssertFalse(RecipeRunner.runsOnlyFloatInference("source \"other.qs\""), "the other file is not read here")
        XCTAssertFalse(RecipeRunner.runsOnlyFloatInference("eval cifar10 limit="), "text that does not parse")
    }
}
