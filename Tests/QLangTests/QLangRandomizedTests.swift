import XCTest
@testable import QLang

/// SplitMix64: small, fast and the same on every platform, so failures reproduce. The same generator
/// as QuantOps.SeededGenerator, which the other test targets use; QLang and its tests do not depend
/// on QuantOps, and test targets cannot share code, so this target keeps its own copy.
struct SeededGenerator: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Builds random but valid syntax trees.
struct ProgramGenerator {
    var random: SeededGenerator

    private mutating func chance(_ percent: Int) -> Bool { Int.random(in: 0..<100, using: &random) < percent }
    private mutating func pick<T>(_ items: [T]) -> T { items[Int.random(in: 0..<items.count, using: &random)] }

    mutating func identifier(avoiding reserved: Set<String> = ["true", "false"]) -> String {
        let starts = Array("abcdefghijklmnopqrstuvwxyzABCXYZ_éλ").map(String.init)
        let bodies = Array("abcxyz0123456789_-").map(String.init) + [".a", ".0", "+c", "+1", "\u{301}"]
        while true {
            var name = pick(starts)
            for _ in 0..<Int.random(in: 0...6, using: &random) { name += pick(bodies) }
            if !reserved.contains(name) { return name }
        }
    }

    mutating func decimal() -> Double {
        switch Int.random(in: 0..<5, using: &random) {
        case 0: return pick([0.1, 0.4, -0.5, 1e-4, 1e-05, 1500, -0.0, 0.0, 1e16, 2.5e-300])
        case 1: return Double.random(in: -1000...1000, using: &random)
        case 2: return Double.random(in: 0...1, using: &random) * pow(10, Double(Int.random(in: -300...300, using: &random)))
        case 3:
            let value = Double(bitPattern: random.next())
            return value.isFinite ? value : 1.25
        default: return Double(Int.random(in: -100...100, using: &random))
        }
    }

    mutating func string() -> String {
        let pieces = ["a", "Z", " ", "\"", "\\", "\n", "\t", "\r", "\r\n", "\u{0}", "\u{7}", "\u{7F}", "\u{85}", "#", "{", "}",
                      "..", ",", "=", "é", "\u{301}", "\u{FFFD}", "\u{1F600}", "\u{200B}", "\u{2028}", "$x", "\\u{41}"]
        var text = ""
        for _ in 0..<Int.random(in: 0...6, using: &random) { text += pick(pieces) }
        return text
    }

    mutating func rangeEnd() -> ValueSyntax {
        chance(70) ? .integer(Int.random(in: 0...300, using: &random)) : .variable(identifier(avoiding: []))
    }

    mutating func element() -> ValueSyntax {
        switch Int.random(in: 0..<8, using: &random) {
        case 0: return .integer(chance(90) ? Int.random(in: -1000...1000, using: &random) : pick([Int.min, Int.max]))
        case 1: return .decimal(decimal())
        case 2: return .string(string())
        case 3: return .identifier(identifier())
        case 4: return .boolean(chance(50))
        case 5: return .variable(identifier(avoiding: []))
        case 6:
            switch Int.random(in: 0..<3, using: &random) {
            case 0: return .range(lower: rangeEnd(), upper: nil)
            case 1: return .range(lower: nil, upper: rangeEnd())
            default: return .range(lower: rangeEnd(), upper: rangeEnd())
            }
        default: return .identifier(pick(["all", "layer", "from", "to", "in", "let", "for", "sweep", "expect"]))
        }
    }

    mutating func value() -> ValueSyntax {
        guard chance(20) else { return element() }
        return .list((0..<Int.random(in: 2...4, using: &random)).map { _ in element() })
    }

    private func at(_ syntax: ValueSyntax) -> Value { Value(syntax, at: nowhere) }

    mutating func statement(depth: Int) -> Statement {
        switch Int.random(in: 0..<10, using: &random) {
        case 0, 1:
            return .assignment(LetStatement(name: identifier(avoiding: []), location: nowhere, value: at(value())))
        case 2 where depth < 3:
            let values: ValueSyntax
            switch Int.random(in: 0..<4, using: &random) {
            case 0: values = .range(lower: rangeEnd(), upper: rangeEnd())
            case 1: values = .variable(identifier(avoiding: []))
            case 2: values = .list([pick([.integer(3), .decimal(0.5), .string("s"), .identifier("all"), .boolean(false)])])
            default: values = .list((0..<Int.random(in: 2...4, using: &random)).map { _ in element() })
            }
            let body = (0..<Int.random(in: 0...3, using: &random)).map { _ in statement(depth: depth + 1) }
            // Only a top-level loop may be a sweep.
            let kind: LoopKind = depth == 0 && chance(30) ? .sweep : .sequential
            return .loop(ForStatement(kind: kind, variable: identifier(avoiding: []), location: nowhere, values: at(values), body: body))
        case 3:
            let subject: ValueSyntax = chance(50) ? .identifier(identifier(avoiding: [])) : .variable(identifier(avoiding: []))
            var expected = element()
            if case .range = expected { expected = .decimal(decimal()) }
            let tolerance: ValueSyntax? = chance(50) ? nil
                : pick([.integer(Int.random(in: 0...5, using: &random)), .decimal(abs(decimal())), .variable("tol")])
            return .expectation(ExpectStatement(location: nowhere, subject: at(subject), comparison: pick(Comparison.allCases),
                                                expected: at(expected), tolerance: tolerance.map(at)))
        default:
            let name = identifier(avoiding: ["let", "for", "sweep", "expect"])
            let arguments: [Argument] = (0..<Int.random(in: 0...4, using: &random)).map { _ in
                chance(40) ? option(identifier(avoiding: []), value()) : positional(value())
            }
            return command(name, arguments)
        }
    }

    mutating func program() -> Program {
        Program(statements: (0..<Int.random(in: 0...6, using: &random)).map { _ in statement(depth: 0) })
    }
}

final class QLangRandomizedTests: XCTestCase {
    func testPrintedRandomProgramsParseBackEqual() throws {
        var generator = ProgramGenerator(random: SeededGenerator(seed: 0x5EED))
        for iteration in 0..<3000 {
            let program = generator.program()
            let text = Printer.print(program)
            do {
                let reparsed = try parse(text)
                XCTAssertEqual(reparsed, program, "iteration \(iteration):\n\(text)")
                XCTAssertEqual(Printer.print(reparsed), text, "printing is canonical")
                if reparsed != program { return }
            } catch {
                return XCTFail("iteration \(iteration): \(error.rendered(source: SourceFile(name: "r.qsh", text: text)))\n\(text)")
            }
        }
    }

    func testMutatedProgramsNeverCrashAndPointInsideTheInput() throws {
        var generator = ProgramGenerator(random: SeededGenerator(seed: 42))
        var random = SeededGenerator(seed: 7)
        let junk: [String] = ["{", "}", "\"", "\\", "\\\n", "..", ",", ",\n", "=", "==", "=>", "$", "#", "\n", ";", "+-", "±", "-",
                              ".", "\u{0}", "\u{FFFD}", "\r", "é", "\u{301}", "1e", "1e-", "99999999999999999999", "\\u{",
                              "for x in 1,2 {", "let", "expect", " ", "\t", "in", "\u{1}", "\u{202E}"]
        var parsed = 0
        for iteration in 0..<6000 {
            var scalars = Array(Printer.print(generator.program()).unicodeScalars)
            for _ in 0..<Int.random(in: 1...4, using: &random) {
                let position = Int.random(in: 0...scalars.count, using: &random)
                switch Int.random(in: 0..<6, using: &random) {
                case 0 where !scalars.isEmpty:
                    let end = min(scalars.count, position + Int.random(in: 1...4, using: &random))
                    if position < end { scalars.removeSubrange(position..<end) }
                case 1 where scalars.count > 1:
                    scalars.swapAt(Int.random(in: 0..<scalars.count, using: &random), Int.random(in: 0..<scalars.count, using: &random))
                case 2:
                    let byte = UInt8.random(in: 0...255, using: &random)
                    scalars.insert(contentsOf: String(decoding: [byte, byte &+ 0x80], as: UTF8.self).unicodeScalars, at: position)
                case 3 where iteration % 50 == 0:
                    let nesting = String(repeating: iteration % 100 == 0 ? "{" : "for i in 1,2 {", count: 300)
                    scalars.insert(contentsOf: nesting.unicodeScalars, at: position)
                default:
                    scalars.insert(contentsOf: junk[Int.random(in: 0..<junk.count, using: &random)].unicodeScalars, at: position)
                }
            }
            var text = String.UnicodeScalarView()
            text.append(contentsOf: scalars)
            let source = SourceFile(name: "m.qsh", text: String(text))
            _ = Parser.needsMoreInput(source.text)
            do {
                let program = try Parser.parse(source)
                parsed += 1
                XCTAssertEqual(try Parser.parse(SourceFile(name: "p", text: Printer.print(program))), program, source.text)
            } catch {
                let line = error.location.line
                XCTAssertEqual(error.location.file, "m.qsh")
                XCTAssertTrue((1...source.lineCount).contains(line), "line \(line) outside \(source.lineCount): \(source.text.debugDescription)")
                let lineLength = source.line(line).unicodeScalars.count
                XCTAssertTrue((1...lineLength + 1).contains(error.location.column),
                              "column \(error.location.column) outside 1...\(lineLength + 1): \(error) in \(source.text.debugDescription)")
                XCTAssertNotNil(error.hint, "\(error) in \(source.text.debugDescription)")
                XCTAssertFalse(error.rendered(source: source).isEmpty)
            }
        }
        XCTAssertGreaterThan(parsed, 100, "some mutants stay valid and must round-trip too")
    }
}
