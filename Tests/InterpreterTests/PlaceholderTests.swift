import XCTest
final class InterpreterTestsPlaceholder: XCTestCase { func testNothing() {} }
