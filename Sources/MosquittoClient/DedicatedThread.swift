import AsyncCompletion
import Foundation

/// Runs a blocking C call on a thread of its own, so that it never blocks Swift's cooperative pool.
func runOnDedicatedThread<T: Sendable>(name: String, _ body: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { continuation in
        let thread = Thread {
            continuation.resume(returning: body())
        }
        thread.name = name
        thread.start()
    }
}

/// Waits for `body` (run on a dedicated thread) at most `timeout`; returns `nil` if it did not finish in time.
/// The thread is abandoned, not killed, when the time runs out. Cancelling the caller does not shorten the wait.
func runOnDedicatedThread<T: Sendable>(name: String, timeout: Duration, _ body: @escaping @Sendable () -> T) async -> T? {
    let finished = Completion<T?>()
    let thread = Thread { finished.resume(returning: body()) }
    thread.name = name
    thread.start()
    return try? await finished.wait(timeLimit: timeout, onTimeLimit: { .success(nil) }, cancellable: false)
}
