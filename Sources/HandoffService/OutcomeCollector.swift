import Foundation
import Handoff
import Synchronization

/// Gathers the shutdown outcomes of many participants handed off concurrently, and lets the service stop waiting
/// at the budget's deadline whatever is still in flight.
final class OutcomeCollector: Sendable {
    struct Entry: Sendable {
        /// The envelope, once the state was snapshotted and encoded.
        var envelope: HandoffEnvelope?
        /// The outcome, once known.
        var outcome: HandoffShutdownOutcome?
    }

    private struct State {
        var entries: [Entry]
        var remaining: Int
        var closed = false
        var waiter: CheckedContinuation<Void, Never>?
    }

    private let state: Mutex<State>

    init(count: Int) {
        state = Mutex(State(entries: Array(repeating: Entry(), count: count), remaining: count))
    }

    /// Records the envelope of participant `index` (before it is sent).
    func prepared(_ index: Int, _ envelope: HandoffEnvelope) {
        state.withLock { state in
            guard !state.closed else { return }
            state.entries[index].envelope = envelope
        }
    }

    /// Records the outcome of participant `index`; ignored after ``close()``.
    func finish(_ index: Int, _ outcome: HandoffShutdownOutcome) {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard !state.closed, state.entries[index].outcome == nil else { return nil }
            state.entries[index].outcome = outcome
            state.remaining -= 1
            return state.remaining == 0 ? state.waiter.take() : nil
        }
        waiter?.resume()
    }

    /// Waits until every outcome is known or `deadline` has passed.
    func wait(until deadline: ContinuousClock.Instant) async {
        let timer = Task {
            try? await Task.sleep(until: deadline, clock: .continuous)
            self.state.withLock { $0.waiter.take() }?.resume()
        }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let done = state.withLock { state in
                if state.remaining == 0 || ContinuousClock.now >= deadline { return true }
                state.waiter = continuation
                return false
            }
            if done { continuation.resume() }
        }
        timer.cancel()
    }

    /// Stops recording and returns the entries as they are.
    func close() -> [Entry] {
        state.withLock { state in
            state.closed = true
            return state.entries
        }
    }
}
