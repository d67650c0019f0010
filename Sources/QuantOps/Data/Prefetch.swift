import Dispatch

/// A value computed on a background queue from the moment it is made, so that preparing the
/// next batch (decoding image files) overlaps with running the model on the current one.
/// `value()` waits for it; each prefetch is a pure function of its inputs, so results stay
/// deterministic and in order however the work is scheduled.
final class Prefetched<Value: Sendable>: @unchecked Sendable {
    private let finished = DispatchSemaphore(value: 0)
    // Written once on the background queue before `finished` is signalled, read after the wait.
    private var result: Result<Value, Error>?

    init(_ work: @escaping @Sendable () throws -> Value) {
        DispatchQueue.global(qos: .userInitiated).async {
            self.result = Result(catching: work)
            self.finished.signal()
        }
    }

    /// Waits for the work to end; may be called once.
    func value() throws -> Value {
        finished.wait()
        return try result!.get()
    }
}
