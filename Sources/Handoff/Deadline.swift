import Synchronization

/// Runs `body` and returns its result, or throws ``HandoffError/timeout(operation:after:)`` once `timeout`
/// has passed, whether or not `body` reacts to cancellation (it is cancelled and left to finish on its own).
/// Cancelling the caller throws `CancellationError` at once.
public func withDeadline<T: Sendable>(
    _ timeout: Duration,
    operation: String,
    _ body: @escaping @Sendable () async throws -> T
) async throws -> T {
    let race = DeadlineRace<T>()
    return try await withTaskCancellationHandler {
        try await withCheckedThrowingContinuation { continuation in
            race.start(continuation, timeout: timeout, operation: operation, body: body)
        }
    } onCancel: {
        race.resume(.failure(CancellationError()))
    }
}

/// The shared state of one ``withDeadline(_:operation:_:)``: whichever of the work, the timer or a
/// cancellation comes first resumes the caller; the others find nothing left to resume.
private final class DeadlineRace<T: Sendable>: Sendable {
    private struct State {
        var continuation: CheckedContinuation<T, any Error>?
        var early: Result<T, any Error>?
        var finished = false
        var tasks: [Task<Void, Never>] = []
    }

    private let state = Mutex(State())

    func start(
        _ continuation: CheckedContinuation<T, any Error>,
        timeout: Duration,
        operation: String,
        body: @escaping @Sendable () async throws -> T
    ) {
        let early = state.withLock { state -> Result<T, any Error>? in
            if let early = state.early { return early }
            state.continuation = continuation
            return nil
        }
        if let early {
            continuation.resume(with: early)
            return
        }
        let work = Task {
            let result: Result<T, any Error>
            do {
                result = .success(try await body())
            } catch {
                result = .failure(error)
            }
            self.resume(result)
        }
        let timer = Task {
            do {
                try await Task.sleep(for: timeout)
            } catch {
                return
            }
            self.resume(.failure(HandoffError.timeout(operation: operation, after: timeout)))
        }
        let alreadyFinished = state.withLock { state in
            state.tasks = [work, timer]
            return state.finished
        }
        if alreadyFinished {
            work.cancel()
            timer.cancel()
        }
    }

    func resume(_ result: Result<T, any Error>) {
        let (continuation, tasks) = state.withLock { state -> (CheckedContinuation<T, any Error>?, [Task<Void, Never>]) in
            guard !state.finished else { return (nil, []) }
            state.finished = true
            guard let continuation = state.continuation else {
                // Cancelled before start: remember the outcome for start.
                state.early = result
                return (nil, [])
            }
            state.continuation = nil
            return (continuation, state.tasks)
        }
        continuation?.resume(with: result)
        for task in tasks { task.cancel() }
    }
}
