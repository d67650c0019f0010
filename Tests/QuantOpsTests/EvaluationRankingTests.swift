@testable import QuantOps
import XCTest

/// The top-5 ranking against its definition: a full sort, highest score first and ties to the
/// lower class index (as argmax and torch.topk on CPU order them), on scores with many ties.
final class EvaluationRankingTests: XCTestCase {
    func testTopIndicesEqualASortWithTiesToTheLowerIndex() {
        var random = SystemRandomNumberGenerator()
        for trial in 0..<200 {
            let classes = [1, 3, 5, 10, 1000][trial % 5]
            // Few distinct values, so ties are common.
            let scores = (0..<classes).map { _ in Float(Int.random(in: 0..<7, using: &random)) }
            let padded = [Float(99)] + scores  // a slice that does not start at 0
            let slice = padded[1...]
            let expected = Array(scores.indices.sorted { scores[$0] > scores[$1] || (scores[$0] == scores[$1] && $0 < $1) }
                .prefix(min(5, classes)))
            XCTAssertEqual(Evaluation.topIndices(slice, count: min(5, classes)), expected, "\(scores)")
        }
    }
}
