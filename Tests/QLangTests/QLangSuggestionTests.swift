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

    func testWordsOfOtherLengthsAreComparedOnlyWithinTheThreshold() {
        XCTAssertEqual(Suggestion.closest(to: "evalxx", among: commands), "eval", "two letters more, threshold 2")
        XCTAssertNil(Suggestion.closest(to: "evalxxx", among: commands), "three letters more, threshold 2")
        XCTAssertEqual(Suggestion.closest(to: "quantizeXY", among: commands), "quantize")
        XCTAssertNil(Suggestion.closest(to: String(repeating: "load", count: 300), among: commands))
        // Skipping by length never changes the answer: compare with every candidate measured.
        func reference(_ word: String, _ candidates: [String]) -> String? {
            let typed = Array(word.lowercased().unicodeScalars)
            guard !typed.isEmpty else { return nil }
            let threshold = typed.count <= 3 ? 1 : max(2, typed.count / 3)
            var best: (String, Int)?
            for candidate in candidates {
                let distance = Suggestion.editDistance(typed, Array(candidate.lowercased().unicodeScalars))
                if distance <= threshold, distance < (best?.1 ?? Int.max) { best = (candidate, distance) }
            }
            return best?.0
        }
        var generator = SystemRandomNumberGenerator()
        let letters = Array("aelodqunt")
        for _ in 0..<2000 {
            // A command with up to five letters inserted, removed or replaced.
            var edited = Array(commands.randomElement(using: &generator)!)
            for _ in 0..<Int.random(in: 0...5, using: &generator) {
                let place = Int.random(in: 0...edited.count, using: &generator)
                switch Int.random(in: 0..<3, using: &generator) {
                case 0: edited.insert(letters.randomElement(using: &generator)!, at: place)
                case 1: if place < edited.count { edited.remove(at: place) }
                default: if place < edited.count { edited[place] = letters.randomElement(using: &generator)! }
                }
            }
            let word = String(edited)
            XCTAssertEqual(Suggestion.closest(to: word, among: commands), reference(word, commands), word)
        }
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
