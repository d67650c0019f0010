import Foundation
import QuantOps
import XCTest

/// The FMA-width probe that `--isa auto` decides by.
final class CPUCapabilitiesTests: XCTestCase {
    func testTheFMAWidthProbeMeasuresOnlyWhereTheCPUHasAVX512() {
        let flags = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        guard flags.contains(" avx2") else { return }
        let speedup = CPUCapabilities.fma512Speedup
        if flags.contains(" avx512f") {
            // About 1 where 512-bit FMAs run as two halves, about 2 with 512-bit FMA units.
            XCTAssert(speedup > 0.6 && speedup < 2.6, "512-bit over 256-bit FMA rate: \(speedup)")
        } else {
            XCTAssertEqual(speedup, 0)
        }
    }
}
