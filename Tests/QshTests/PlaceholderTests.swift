import XCTest
final class QshTestsPlaceholder: XCTestCase { func testNothing() {} }
