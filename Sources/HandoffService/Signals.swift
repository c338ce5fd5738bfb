import Synchronization

/// A one-shot signal: ``fire()`` once, and every ``wait()`` returns.
final class OneShotSignal: Sendable {
    private struct State {
        var fired = false
        var waiters: [UInt64: CheckedContinuation<Bool, Never>] = [:]
        var nextID: UInt64 = 0
    }

    private let state = Mutex(State())

    /// Fires the signal; waiters return `true`. Firing again does nothing.
    func fire() {
        let waiters = state.withLock { state -> [CheckedContinuation<Bool, Never>] in
            guard !state.fired else { return [] }
            state.fired = true
            defer { state.waiters = [:] }
            return Array(state.waiters.values)
        }
        for waiter in waiters { waiter.resume(returning: true) }
    }

    /// Whether the signal has fired.
    var hasFired: Bool { state.withLock { $0.fired } }

    /// Waits until the signal fires (`true`) or the calling task is cancelled (`false`).
    func wait() async -> Bool {
        let id = state.withLock { state in
            defer { state.nextID += 1 }
            return state.nextID
        }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
                let resumeNow: Bool? = state.withLock { state in
                    if state.fired { return true }
                    if Task.isCancelled { return false }
                    state.waiters[id] = continuation
                    return nil
                }
                if let resumeNow { continuation.resume(returning: resumeNow) }
            }
        } onCancel: {
            state.withLock { $0.waiters.removeValue(forKey: id) }?.resume(returning: false)
        }
    }
}

/// Counts participants down to ready; ``wait()`` returns when all have arrived or the latch was released.
final class ReadinessLatch: Sendable {
    private let remaining: Mutex<Int>
    private let signal = OneShotSignal()

    init(count: Int) {
        remaining = Mutex(count)
        if count == 0 { signal.fire() }
    }

    /// One participant is ready.
    func arrive() {
        let done = remaining.withLock { remaining in
            remaining -= 1
            return remaining == 0
        }
        if done { signal.fire() }
    }

    /// Lets every waiter go (at shutdown, so nobody waits for a readiness that will not come).
    func release() { signal.fire() }

    /// Waits until every participant is ready, the latch is released, or the caller is cancelled.
    func wait() async { _ = await signal.wait() }
}
