import Dispatch

/// A value computed on a background queue from the moment it is made, so that preparing the
/// next batch (decoding image files) overlaps with running the model on the current one; or,
/// made with `inBackground: false`, computed only when `value()` asks for it. `value()` waits
/// for it; each prefetch is a pure function of its inputs, so results stay deterministic and in
/// order however the work is scheduled.
final class Prefetched<Value: Sendable>: @unchecked Sendable {
    private let finished = DispatchSemaphore(value: 0)
    // Written once (on the background queue before `finished` is signalled, or by `value()`
    // itself), read after the wait.
    private var result: Result<Value, Error>?
    private var deferredWork: (() throws -> Value)?

    init(inBackground: Bool = true, _ work: @escaping @Sendable () throws -> Value) {
        guard inBackground else {
            deferredWork = work
            return
        }
        DispatchQueue.global(qos: .userInitiated).async {
            self.result = Result(catching: work)
            self.finished.signal()
        }
    }

    /// Waits for the work to end (or does it now, when it was deferred).
    func value() throws -> Value {
        if let work = deferredWork {
            deferredWork = nil
            result = Result(catching: work)
            finished.signal()
        }
        finished.wait()
        finished.signal()  // any later wait returns at once
        return try result!.get()
    }

    /// Lets no work outlive the caller: waits for background work, drops deferred work. The
    /// value is not read afterwards.
    func settle() {
        if deferredWork != nil {
            deferredWork = nil
            return
        }
        finished.wait()
        finished.signal()
    }
}
