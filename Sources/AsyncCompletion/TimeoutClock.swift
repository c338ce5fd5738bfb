import Dispatch
import Foundation
import Synchronization

/// One thread that fires the time limits of all pending operations.
///
/// Arming a limit is a lock and a heap insertion, cancelling it a lock: no task, no dispatch source, and no
/// wake-up of the thread unless the new limit is the earliest (with equal timeouts, limits are armed in
/// order, so almost never). A cancelled limit drops its action at once and leaves the heap when it expires.
package final class TimeoutClock: Sendable {
    /// The clock shared by the whole process; its thread starts with the first limit.
    package static let shared = TimeoutClock()

    /// One armed limit.
    package final class Timeout: Sendable {
        fileprivate let action: Mutex<(@Sendable () -> Void)?>

        fileprivate init(_ action: @escaping @Sendable () -> Void) {
            self.action = Mutex(action)
        }

        /// Disarms the limit: its action will not run (unless it is running already).
        package func cancel() {
            _ = action.withLock { $0.take() }
        }

        fileprivate func fire() {
            action.withLock { $0.take() }?()
        }
    }

    private struct Entry {
        var deadline: UInt64
        var timeout: Timeout
    }

    private struct State {
        /// A binary min-heap on `deadline`.
        var heap: [Entry] = []
        var threadStarted = false
        /// The deadline the thread sleeps until (`.max`: until woken).
        var sleepingUntil: UInt64 = .max

        mutating func push(_ entry: Entry) {
            heap.append(entry)
            var child = heap.count - 1
            while child > 0 {
                let parent = (child - 1) / 2
                guard heap[child].deadline < heap[parent].deadline else { break }
                heap.swapAt(child, parent)
                child = parent
            }
        }

        mutating func popFirst() -> Entry {
            let first = heap[0]
            let last = heap.removeLast()
            if !heap.isEmpty {
                heap[0] = last
                var parent = 0
                while true {
                    let left = 2 * parent + 1
                    let right = left + 1
                    var smallest = parent
                    if left < heap.count, heap[left].deadline < heap[smallest].deadline { smallest = left }
                    if right < heap.count, heap[right].deadline < heap[smallest].deadline { smallest = right }
                    guard smallest != parent else { break }
                    heap.swapAt(parent, smallest)
                    parent = smallest
                }
            }
            return first
        }
    }

    private let state = Mutex(State())
    private let wakeUp = DispatchSemaphore(value: 0)

    private init() {}

    /// Runs `action` on the clock's thread once `delay` has passed, unless the returned limit is cancelled first.
    /// `action` must be quick (it resumes a continuation, say): every other limit waits for it.
    package func schedule(after delay: Duration, _ action: @escaping @Sendable () -> Void) -> Timeout {
        let timeout = Timeout(action)
        let components = delay.components
        let nanoseconds = max(0, components.seconds) * 1_000_000_000 + max(0, components.attoseconds / 1_000_000_000)
        let now = DispatchTime.now().uptimeNanoseconds
        let deadline = now.addingReportingOverflow(UInt64(clamping: nanoseconds)).overflow ? UInt64.max - 1 : now + UInt64(nanoseconds)
        let (startThread, wake) = state.withLock { state -> (Bool, Bool) in
            state.push(Entry(deadline: deadline, timeout: timeout))
            if !state.threadStarted {
                state.threadStarted = true
                return (true, false)
            }
            if deadline < state.sleepingUntil {
                state.sleepingUntil = deadline
                return (false, true)
            }
            return (false, false)
        }
        if startThread {
            let thread = Thread { [self] in run() }
            thread.name = "handoff-timeouts"
            thread.start()
        } else if wake {
            wakeUp.signal()
        }
        return timeout
    }

    private func run() {
        while true {
            let now = DispatchTime.now().uptimeNanoseconds
            let (due, next) = state.withLock { state -> ([Timeout], UInt64) in
                var due: [Timeout] = []
                while let first = state.heap.first, first.deadline <= now {
                    due.append(state.popFirst().timeout)
                }
                state.sleepingUntil = state.heap.first?.deadline ?? .max
                return (due, state.sleepingUntil)
            }
            for timeout in due { timeout.fire() }
            if next == .max {
                wakeUp.wait()
            } else {
                _ = wakeUp.wait(timeout: DispatchTime(uptimeNanoseconds: next))
            }
        }
    }
}
