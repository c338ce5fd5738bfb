import Foundation
import Synchronization

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

/// Resumes a continuation exactly once, from whichever of several racing sources comes first.
final class ResumeOnce<T: Sendable>: Sendable {
    private let continuation: Mutex<CheckedContinuation<T, Never>?>

    init(_ continuation: CheckedContinuation<T, Never>) {
        self.continuation = Mutex(continuation)
    }

    func resume(_ value: T) {
        continuation.withLock { $0.take() }?.resume(returning: value)
    }
}

/// Waits for `body` (run on a dedicated thread) at most `timeout`; returns `nil` if it did not finish in time.
/// The thread is abandoned, not killed, when the time runs out.
func runOnDedicatedThread<T: Sendable>(name: String, timeout: Duration, _ body: @escaping @Sendable () -> T) async -> T? {
    await withCheckedContinuation { (continuation: CheckedContinuation<T?, Never>) in
        let once = ResumeOnce(continuation)
        let thread = Thread { once.resume(body()) }
        thread.name = name
        thread.start()
        Task {
            try? await Task.sleep(for: timeout)
            once.resume(nil)
        }
    }
}
