import XCTest
final class QLangTestsPlaceholder: XCTestCase { func testNothing() {} }
