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
