import AsyncCompletion

/// Runs `body` and returns its result, or throws ``HandoffError/timeout(operation:after:)`` once `timeout`
/// has passed, whether or not `body` reacts to cancellation (it is cancelled and left to finish on its own).
/// Cancelling the caller throws `CancellationError` at once.
///
/// `body` starts at once on the caller's thread (`Task.immediate`): one that finishes without suspending
/// costs no thread hop and no timer. Otherwise the time limit is kept by `TimeoutClock` (see `withTimeLimit`
/// and `Completion`).
public func withDeadline<T: Sendable>(
    _ timeout: Duration,
    operation: String,
    _ body: @escaping @Sendable () async throws -> T
) async throws -> T {
    try await withTimeLimit(timeout, timeoutError: { HandoffError.timeout(operation: operation, after: timeout) }, body)
}
