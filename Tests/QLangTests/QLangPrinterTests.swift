import XCTest
@testable import QLang

final class QLangPrinterTests: XCTestCase {
    func testCanonicalLayout() throws {
        let program = try parse("""
            load  resnet20 from "a \\"b\\"\\\\.th" ;fold bn
            for b in 2..8 { for lam in 0.1,0.2,1e-05 { compensate dfmpc lambda = $lam ; eval cifar10 }
            expect top1==91.73±0.05 }
            let layers = 1, 4, 7..9
            quantize layer 3.. ..5 bits=6
            """)
        XCTAssertEqual(Printer.print(program), """
            load resnet20 from "a \\"b\\"\\\\.th"
            fold bn
            for b in 2..8 {
                for lam in 0.1, 0.2, 1e-05 {
                    compensate dfmpc lambda=$lam
                    eval cifar10
                }
                expect top1 == 91.73 +- 0.05
            }
            let layers = 1, 4, 7..9
            quantize layer 3.. ..5 bits=6
            """)
    }

    func testValuesPrintSoTheyReadBackIdentically() throws {
        XCTAssertEqual(Printer.print(.string("tab\tnl\nnul\u{0}bell\u{7}é\u{301}\"\\")), #""tab\tnl\nnul\0bell\u{7}é́\"\\""#)
        for number in [0.1, 1e-5, 1.5e300, -0.0, Double.leastNonzeroMagnitude, Double.greatestFiniteMagnitude, 123456789.123, Double.pi, 1.0, -2.5e-7] {
            let text = Printer.print(.decimal(number))
            XCTAssertEqual(try kinds(text), [.decimal(number), .end], text)
        }
        XCTAssertEqual(Printer.print(.integer(Int.min)), "-9223372036854775808")
        XCTAssertEqual(try kinds(Printer.print(.integer(Int.min))), [.integer(Int.min), .end])
        XCTAssertEqual(Printer.print(.range(lower: .variable("a"), upper: nil)), "$a..")
        XCTAssertEqual(Printer.print(.list([.boolean(true), .identifier("all"), .range(lower: nil, upper: .integer(3))])), "true, all, ..3")
    }

    func testEmptyLoopAndStatementPrinting() throws {
        let program = try parse("for x in 1, 2 {}")
        XCTAssertEqual(Printer.print(program), "for x in 1, 2 {\n}")
        XCTAssertEqual(try parse(Printer.print(program)), program)
        XCTAssertEqual(Printer.print(program.statements[0]), "for x in 1, 2 {\n}")
        XCTAssertEqual(Printer.print(Program(statements: [])), "")
        XCTAssertEqual(Printer.print(option("layers", .list([.integer(1), .integer(3)]))), "layers=1, 3")
        XCTAssertEqual(Printer.print(positional(.variable("x"))), "$x")
    }
}
