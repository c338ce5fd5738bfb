import AsyncCompletion
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
    }

    private let state: Mutex<State>
    /// Resumed when the last outcome is recorded.
    private let allKnown = Completion<Void>()

    init(count: Int) {
        state = Mutex(State(entries: Array(repeating: Entry(), count: count), remaining: count))
        if count == 0 { allKnown.resume(returning: ()) }
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
        let last = state.withLock { state in
            guard !state.closed, state.entries[index].outcome == nil else { return false }
            state.entries[index].outcome = outcome
            state.remaining -= 1
            return state.remaining == 0
        }
        if last { allKnown.resume(returning: ()) }
    }

    /// Waits until every outcome is known or `deadline` has passed.
    func wait(until deadline: ContinuousClock.Instant) async {
        // Not cancellable: the shutdown waits for the outcomes whatever happens to its task.
        _ = try? await allKnown.wait(
            timeLimit: ContinuousClock.now.duration(to: deadline), onTimeLimit: { .success(()) }, cancellable: false)
    }

    /// Stops recording and returns the entries as they are.
    func close() -> [Entry] {
        state.withLock { state in
            state.closed = true
            return state.entries
        }
    }
}
