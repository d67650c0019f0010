@testable import QuantOps
import XCTest

/// The compiled model's activation buffers: a released buffer serves the next request it can
/// hold, the smallest such first, and a request nothing free holds gets a new buffer.
final class BufferPoolTests: XCTestCase {
    func testRequestsTakeTheSmallestFreeBufferThatHoldsThem() {
        var pool = BufferPool()
        defer { pool.drain() }
        let large = pool.acquire(1000), small = pool.acquire(100), medium = pool.acquire(400)
        XCTAssertEqual(Set([large, small, medium]).count, 3)
        pool.release(large)
        pool.release(small)
        pool.release(medium)

        XCTAssertEqual(pool.acquire(300), medium, "400 bytes is the smallest free buffer that holds 300")
        XCTAssertEqual(pool.acquire(50), small)
        XCTAssertEqual(pool.acquire(1000), large)
        let fresh = pool.acquire(10)
        XCTAssertFalse([large, small, medium].contains(fresh), "every buffer is in use, so a new one is made")
        pool.release(fresh)
        pool.release(large)
        let larger = pool.acquire(1001)
        XCTAssertNotEqual(larger, large, "a free buffer too small for the request is not handed out")
        XCTAssertEqual(pool.acquire(900), large)
    }

    func testBuffersAreWritableToTheRequestedSizeAndAligned() {
        var pool = BufferPool()
        defer { pool.drain() }
        let first = pool.acquire(4096)
        first.initializeMemory(as: UInt8.self, repeating: 7, count: 4096)
        pool.release(first)
        let second = pool.acquire(3000)
        XCTAssertEqual(second, first)
        XCTAssertEqual(Int(bitPattern: second) % 64, 0)
        XCTAssertEqual(second.load(fromByteOffset: 2999, as: UInt8.self), 7, "a reused buffer keeps its bytes; callers overwrite them")
    }
}
