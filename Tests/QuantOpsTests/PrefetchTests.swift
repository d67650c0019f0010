@testable import QuantOps
import Foundation
import XCTest

/// Batches prepared in the background run at once; deferred ones only when asked for, and a
/// deferred batch nobody asks for is never prepared. Either way the values are the same.
final class PrefetchTests: XCTestCase {
    final class Counter: @unchecked Sendable {
        private let lock = NSLock()
        private var value = 0
        func increment() { lock.lock(); value += 1; lock.unlock() }
        var count: Int { lock.lock(); defer { lock.unlock() }; return value }
    }

    func testBackgroundWorkStartsAtOnce() throws {
        let started = DispatchSemaphore(value: 0)
        let prefetched = Prefetched(inBackground: true) { () -> Int in
            started.signal()
            return 7
        }
        XCTAssertEqual(started.wait(timeout: .now() + 10), .success, "background work did not start before value()")
        XCTAssertEqual(try prefetched.value(), 7)
        prefetched.settle()  // after value(), returns at once
    }

    func testDeferredWorkRunsOnlyWhenAskedFor() throws {
        let runs = Counter()
        let asked = Prefetched(inBackground: false) { () -> Int in runs.increment(); return 3 }
        let dropped = Prefetched(inBackground: false) { () -> Int in runs.increment(); return 4 }
        XCTAssertEqual(runs.count, 0)
        XCTAssertEqual(try asked.value(), 3)
        dropped.settle()
        XCTAssertEqual(runs.count, 1, "settle() must drop deferred work, not do it")
    }

    func testErrorsReachTheCallerInBothModes() {
        struct Broken: Error {}
        for inBackground in [true, false] {
            let prefetched = Prefetched<Int>(inBackground: inBackground) { throw Broken() }
            XCTAssertThrowsError(try prefetched.value()) { XCTAssertTrue($0 is Broken, "\(inBackground)") }
        }
    }
}
