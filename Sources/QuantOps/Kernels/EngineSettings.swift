import CBLAS
import Foundation

/// Process-wide settings of the inference engine.
public enum EngineSettings {
    /// Worker threads for the engine's parallel loops; at least 1. Defaults to every core.
    ///
    /// The engine parallelises over images and output columns itself and runs each BLAS call
    /// single-threaded inside those loops, so OpenBLAS is pinned to one thread whenever this
    /// is set; two levels of threading would oversubscribe the cores.
    public static var threads: Int {
        get { storage.withLock { $0 } }
        set {
            let clamped = max(1, newValue)
            storage.withLock { $0 = clamped }
            openblas_set_num_threads(1)
        }
    }

    /// Whether float convolutions may run on qsh's own AVX2 kernels (`BlockedConvolution`:
    /// Winograd for 3x3) rather than oneDNN's. On unless the environment sets
    /// `QSH_OWN_KERNELS=0`, which only benchmarks comparing the two need.
    public static var ownConvolutionKernels: Bool {
        get { ownKernelsStorage.withLock { $0 } }
        set { ownKernelsStorage.withLock { $0 = newValue } }
    }

    private static let ownKernelsStorage = LockedValue(ProcessInfo.processInfo.environment["QSH_OWN_KERNELS"] != "0")

    private static let storage: LockedValue<Int> = {
        openblas_set_num_threads(1)
        return LockedValue(ProcessInfo.processInfo.activeProcessorCount)
    }()
}

/// A value behind a lock, for the few process-wide settings that any thread may read.
final class LockedValue<Value: Sendable>: @unchecked Sendable {
    private var value: Value
    private let lock = NSLock()

    init(_ value: Value) { self.value = value }

    func withLock<Result>(_ body: (inout Value) -> Result) -> Result {
        lock.lock()
        defer { lock.unlock() }
        return body(&value)
    }
}

/// The number of workers `parallelFor(count, ...)` uses.
func workerCount(for count: Int) -> Int { max(1, min(EngineSettings.threads, count)) }
