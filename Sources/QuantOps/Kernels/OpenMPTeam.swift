import Foundation

/// The one parallel loop of the engine: `body(worker, index)` for each index in `0..<count` on at
/// most `EngineSettings.threads` workers. Worker `w` takes indices `w, w + workers, ...`, so
/// per-worker scratch space can be allocated once per call rather than once per index. It runs on
/// the OpenMP team that oneDNN runs on (`OpenMPTeam`).
func parallelFor(_ count: Int, _ body: (_ worker: Int, _ index: Int) -> Void) {
    OpenMPTeam.parallelFor(count, body)
}

/// Parallel loops on the OpenMP thread team that oneDNN runs on.
///
/// After each oneDNN call its OpenMP workers keep spinning for a while, waiting for the next
/// parallel region. Work handed to a second pool of threads (Dispatch) in that window competes
/// with the spinning workers for the cores; work handed to the same team starts at once on
/// them. Code that alternates between oneDNN primitives and its own loops (the gradient tape)
/// therefore runs its loops here. The entry points are looked up at run time, as the OpenMP
/// runtime comes in with libdnnl; without them the loops run on Dispatch.
enum OpenMPTeam {
    private typealias Region = @convention(c) (UnsafeMutableRawPointer?) -> Void
    private typealias Parallel = @convention(c) (Region, UnsafeMutableRawPointer?, UInt32, UInt32) -> Void
    private typealias Query = @convention(c) () -> Int32

    private struct EntryPoints: @unchecked Sendable {
        var parallel: Parallel
        var threadNumber: Query
        var threadCount: Query
    }

    private static let entryPoints: EntryPoints? = {
        let process = UnsafeMutableRawPointer(bitPattern: 0)
        guard let parallel = dlsym(process, "GOMP_parallel"), let threadNumber = dlsym(process, "omp_get_thread_num"),
              let threadCount = dlsym(process, "omp_get_num_threads") else { return nil }
        return EntryPoints(parallel: unsafeBitCast(parallel, to: Parallel.self),
                           threadNumber: unsafeBitCast(threadNumber, to: Query.self),
                           threadCount: unsafeBitCast(threadCount, to: Query.self))
    }()

    /// `parallelFor`'s contract on the OpenMP team: `body(worker, index)` for each index in
    /// `0..<count`, worker `w` taking indices `w, w + workers, ...`, at most
    /// `EngineSettings.threads` workers.
    static func parallelFor(_ count: Int, _ body: (_ worker: Int, _ index: Int) -> Void) {
        let workers = min(EngineSettings.threads, count)
        guard workers > 1, let entryPoints else {
            if workers <= 1 {
                for index in 0 ..< count { body(0, index) }
            } else {
                onDispatch(count, workers: workers, body)
            }
            return
        }
        typealias Work = (count: Int, body: (Int, Int) -> Void, threadNumber: Query, threadCount: Query)
        withoutActuallyEscaping(body) { body in
            var work: Work = (count, body, entryPoints.threadNumber, entryPoints.threadCount)
            withUnsafeMutablePointer(to: &work) { pointer in
                entryPoints.parallel({ context in
                    guard let work = context?.assumingMemoryBound(to: Work.self).pointee else { return }
                    let worker = Int(work.threadNumber()), workers = max(1, Int(work.threadCount()))
                    for index in stride(from: worker, to: work.count, by: workers) { work.body(worker, index) }
                }, UnsafeMutableRawPointer(pointer), UInt32(workers), 0)
            }
        }
    }

    /// The same contract on Dispatch's threads, for a process without the OpenMP runtime.
    private static func onDispatch(_ count: Int, workers: Int, _ body: (_ worker: Int, _ index: Int) -> Void) {
        // Workers write disjoint parts of their output buffers, which the compiler cannot see.
        withoutActuallyEscaping(body) { body in
            let shared = UncheckedSendable(body)
            DispatchQueue.concurrentPerform(iterations: workers) { worker in
                for index in stride(from: worker, to: count, by: workers) { shared.value(worker, index) }
            }
        }
    }
}

private struct UncheckedSendable<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}
