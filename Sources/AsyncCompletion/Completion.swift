import Synchronization

/// The one outcome of an operation that several sources race to decide: a result (an acknowledgement, a callback,
/// a task's return), the waiter's time limit, or the waiter's cancellation, whichever comes first.
///
/// ```swift
/// let acknowledged = Completion<Void>()
/// client.publish(topic, payload: payload) { result in acknowledged.resume(result) }
/// try await acknowledged.wait(timeLimit: timeout) { MyError.timeout(after: timeout) }
/// ```
///
/// - The first ``resume(_:)`` decides; later ones return `false` and are ignored, so every source may simply
///   resume without knowing whether another was first.
/// - A completion may be resumed before anybody waits: the wait then returns at once, without a suspension, a
///   timer or a cancellation handler beyond the call's.
/// - It has at most one waiter: a task in ``wait(timeLimit:onTimeLimit:cancellable:)`` (or ``value``), or a
///   callback given to ``onFinish(_:)``. The time limit belongs to the waiter, which passes it; it is kept by
///   ``TimeoutClock`` (no task, no sleep) and armed only if the outcome is not known when the wait starts.
/// - The outcome is kept after the wait, for ``isFinished`` and ``outcome``.
package final class Completion<Value: Sendable>: Sendable {
    private enum Waiter {
        case task(CheckedContinuation<Value, any Error>)
        case callback(@Sendable (Result<Value, any Error>) -> Void)

        func resume(with result: Result<Value, any Error>) {
            switch self {
            case .task(let continuation): continuation.resume(with: result)
            case .callback(let callback): callback(result)
            }
        }
    }

    private struct State {
        var outcome: Result<Value, any Error>?
        var waiter: Waiter?
        var hadWaiter = false
        var timer: TimeoutClock.Timeout?
    }

    private let state = Mutex(State())

    /// Creates a completion nobody has resumed or waits for yet.
    package init() {}

    /// Decides the outcome, unless it was decided before: returns whether this call decided it (and resumed the
    /// waiter, if there is one). Quick and non-blocking: may be called from any thread, a C callback included.
    @discardableResult
    package func resume(_ result: Result<Value, any Error>) -> Bool {
        let decided = state.withLock { state -> (waiter: Waiter?, timer: TimeoutClock.Timeout?)? in
            guard state.outcome == nil else { return nil }
            state.outcome = result
            defer {
                state.waiter = nil
                state.timer = nil
            }
            return (state.waiter, state.timer)
        }
        guard let decided else { return false }
        decided.timer?.cancel()
        decided.waiter?.resume(with: result)
        return true
    }

    /// ``resume(_:)`` with a value.
    @discardableResult
    package func resume(returning value: Value) -> Bool {
        resume(.success(value))
    }

    /// ``resume(_:)`` with an error.
    @discardableResult
    package func resume(throwing error: any Error) -> Bool {
        resume(.failure(error))
    }

    /// Whether the outcome is decided.
    package var isFinished: Bool {
        state.withLock { $0.outcome != nil }
    }

    /// The outcome, once decided.
    package var outcome: Result<Value, any Error>? {
        state.withLock { $0.outcome }
    }

    /// Waits for the outcome, without a time limit; cancelling the waiting task ends the wait with `CancellationError`.
    package var value: Value {
        get async throws { try await wait(timeLimit: nil) }
    }

    /// Waits for the outcome and returns it (or throws its error).
    ///
    /// - Parameters:
    ///   - timeLimit: How long to wait at most; `nil`: no limit. When it passes first, `onTimeLimit()` is the outcome.
    ///   - onTimeLimit: The outcome when the time limit passes first; runs on ``TimeoutClock``'s thread and must be
    ///     quick (build the error, nothing more). Called only then.
    ///   - cancellable: Whether cancelling the waiting task ends the wait with `CancellationError` (the default), or
    ///     is ignored (for waits that must see the real outcome, such as a thread that owns a resource).
    package func wait(
        timeLimit: Duration?,
        onTimeLimit: @escaping @Sendable () -> Result<Value, any Error> = { .failure(CompletionTimeLimit()) },
        cancellable: Bool = true
    ) async throws -> Value {
        if let outcome = self.outcome { return try outcome.get() }
        guard cancellable else { return try await suspend(timeLimit: timeLimit, onTimeLimit: onTimeLimit) }
        return try await withTaskCancellationHandler {
            try await suspend(timeLimit: timeLimit, onTimeLimit: onTimeLimit)
        } onCancel: {
            resume(throwing: CancellationError())
        }
    }

    /// ``wait(timeLimit:onTimeLimit:cancellable:)`` with a time limit that ends the wait with `timeoutError()`.
    package func wait(
        timeLimit: Duration,
        timeoutError: @escaping @Sendable () -> any Error,
        cancellable: Bool = true
    ) async throws -> Value {
        try await wait(timeLimit: timeLimit, onTimeLimit: { .failure(timeoutError()) }, cancellable: cancellable)
    }

    /// Calls `body` once with the outcome: when it is decided, on the thread that decides it, or at once (on the
    /// caller's thread) if it already is. Instead of a task waiting; `body` must be quick and must not block.
    package func onFinish(_ body: @escaping @Sendable (Result<Value, any Error>) -> Void) {
        let outcome = state.withLock { state -> Result<Value, any Error>? in
            if let outcome = state.outcome { return outcome }
            precondition(!state.hadWaiter, "a Completion has one waiter")
            state.hadWaiter = true
            state.waiter = .callback(body)
            return nil
        }
        if let outcome { body(outcome) }
    }

    private func suspend(timeLimit: Duration?, onTimeLimit: @escaping @Sendable () -> Result<Value, any Error>) async throws -> Value {
        try await withCheckedThrowingContinuation { continuation in
            let outcome = state.withLock { state -> Result<Value, any Error>? in
                if let outcome = state.outcome { return outcome }
                precondition(!state.hadWaiter, "a Completion has one waiter")
                state.hadWaiter = true
                state.waiter = .task(continuation)
                return nil
            }
            if let outcome { return continuation.resume(with: outcome) }
            guard let timeLimit else { return }
            let timer = TimeoutClock.shared.schedule(after: timeLimit) { [self] in
                resume(onTimeLimit())
            }
            // Decided while the limit was armed: nobody else will disarm it.
            let decided = state.withLock { state in
                guard state.outcome == nil else { return true }
                state.timer = timer
                return false
            }
            if decided { timer.cancel() }
        }
    }
}

/// The error of a ``Completion`` whose time limit passed first, when its waiter named no error of its own.
package struct CompletionTimeLimit: Error, Sendable, CustomStringConvertible {
    package init() {}

    package var description: String { "The time limit passed before the operation completed" }
}

/// Runs `body` and returns its result, or throws `timeoutError()` once `timeLimit` has passed, whether or not `body`
/// reacts to cancellation (it is cancelled and left to finish on its own). Cancelling the caller throws
/// `CancellationError` at once; a caller cancelled already does not start `body`.
///
/// `body` starts at once on the caller's thread (`Task.immediate`): one that finishes without suspending costs no
/// thread hop and no timer. Otherwise the time limit is kept by ``TimeoutClock`` (see ``Completion``).
package func withTimeLimit<T: Sendable>(
    _ timeLimit: Duration,
    timeoutError: @escaping @Sendable () -> any Error,
    _ body: @escaping @Sendable () async throws -> T
) async throws -> T {
    try Task.checkCancellation()
    let completion = Completion<T>()
    let work = Task.immediate {
        do {
            completion.resume(returning: try await body())
        } catch {
            completion.resume(throwing: error)
        }
    }
    // Whoever came first, the work is not needed any more (a no-op if it finished).
    defer { work.cancel() }
    return try await completion.wait(timeLimit: timeLimit, timeoutError: timeoutError)
}
