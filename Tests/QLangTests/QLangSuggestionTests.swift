import XCTest
@testable import QLang

final class QLangSuggestionTests: XCTestCase {
    let commands = ["load", "fold", "quantize", "ternary", "compensate", "eval", "calibrate", "help", "plot"]

    func testFindsTheClosestCandidate() {
        XCTAssertEqual(Suggestion.closest(to: "evl", among: commands), "eval")
        XCTAssertEqual(Suggestion.closest(to: "EVAL", among: commands), "eval", "case is ignored")
        XCTAssertEqual(Suggestion.closest(to: "qunatize", among: commands), "quantize", "a swap is one edit")
        XCTAssertEqual(Suggestion.closest(to: "compnesate", among: commands), "compensate")
        XCTAssertEqual(Suggestion.closest(to: "calbrat", among: commands), "calibrate")
        XCTAssertEqual(Suggestion.closest(to: "lod", among: commands), "load")
    }

    func testRejectsDistantWords() {
        XCTAssertNil(Suggestion.closest(to: "xyz", among: commands))
        XCTAssertNil(Suggestion.closest(to: "ab", among: commands))
        XCTAssertNil(Suggestion.closest(to: "quickly", among: commands))
        XCTAssertNil(Suggestion.closest(to: "", among: commands))
        XCTAssertNil(Suggestion.closest(to: "eval", among: []))
    }

    func testTiesGoToTheEarlierCandidate() {
        XCTAssertEqual(Suggestion.closest(to: "bat", among: ["cat", "bar"]), "cat")
    }

    func testEditDistance() {
        func distance(_ a: String, _ b: String) -> Int {
            Suggestion.editDistance(Array(a.unicodeScalars), Array(b.unicodeScalars))
        }
        XCTAssertEqual(distance("kitten", "sitting"), 3)
        XCTAssertEqual(distance("ab", "ba"), 1)
        XCTAssertEqual(distance("", "abc"), 3)
        XCTAssertEqual(distance("ca", "abc"), 3, "optimal string alignment does not edit a swapped pair again")
        XCTAssertEqual(distance("same", "same"), 0)
    }
}
