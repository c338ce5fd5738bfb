import AsyncCompletion
import Synchronization
import Testing

/// The error the tests' time limits end a wait with.
private struct TimedOut: Error, Equatable {}

/// What the clock's actions did, in order.
private final class Recorder: Sendable {
    private let entries = Mutex<[Int]>([])
    func append(_ entry: Int) { entries.withLock { $0.append(entry) } }
    var all: [Int] { entries.withLock { $0 } }
}

/// A Sendable counter.
private final class Counter: Sendable {
    private let count = Mutex(0)
    func increment() { count.withLock { $0 += 1 } }
    var value: Int { count.withLock { $0 } }
}

@Suite("Completion: resume once, whichever of result, time limit and cancellation comes first", .timeLimit(.minutes(1)))
struct CompletionTests {
    @Test("the result comes first: the waiter gets it, the time limit and later results change nothing")
    func resultFirst() async throws {
        let completion = Completion<Int>()
        let waiter = Task { try await completion.wait(timeLimit: .milliseconds(300), timeoutError: { TimedOut() }) }
        try await Task.sleep(for: .milliseconds(20))
        #expect(completion.resume(returning: 7))
        #expect(try await waiter.value == 7)
        // Past the time limit: it was disarmed, the outcome stays the result.
        try await Task.sleep(for: .milliseconds(400))
        #expect(!completion.resume(throwing: TimedOut()))
        #expect(try completion.outcome?.get() == 7)
    }

    @Test("the time limit comes first: the waiter gets the caller's error, a late result is ignored")
    func timeLimitFirst() async throws {
        let completion = Completion<Int>()
        let clock = ContinuousClock()
        let start = clock.now
        await #expect(throws: TimedOut.self) {
            try await completion.wait(timeLimit: .milliseconds(50), timeoutError: { TimedOut() })
        }
        #expect(start.duration(to: clock.now) >= .milliseconds(50))
        #expect(completion.isFinished)
        #expect(!completion.resume(returning: 1))
    }

    @Test("a time limit may decide a value instead of an error")
    func timeLimitWithValue() async throws {
        let completion = Completion<Int?>()
        let value = try await completion.wait(timeLimit: .milliseconds(20), onTimeLimit: { .success(nil) })
        #expect(value == nil)
    }

    @Test("cancellation comes first: the waiter gets CancellationError at once, a late result is ignored")
    func cancellationFirst() async throws {
        let completion = Completion<Int>()
        let waiter = Task { try await completion.wait(timeLimit: .seconds(30), timeoutError: { TimedOut() }) }
        try await Task.sleep(for: .milliseconds(20))
        waiter.cancel()
        await #expect(throws: CancellationError.self) { try await waiter.value }
        #expect(!completion.resume(returning: 1))
    }

    @Test("a task cancelled before it waits gets CancellationError without suspending for the result")
    func cancelledBeforeWait() async throws {
        let completion = Completion<Int>()
        let waiter = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            return try await completion.value
        }
        await #expect(throws: CancellationError.self) { try await waiter.value }
        #expect(!completion.resume(returning: 1))
    }

    @Test("a wait that is not cancellable ignores cancellation and returns the result")
    func notCancellable() async throws {
        let completion = Completion<Int>()
        let waiter = Task { try await completion.wait(timeLimit: nil, cancellable: false) }
        try await Task.sleep(for: .milliseconds(20))
        waiter.cancel()
        try await Task.sleep(for: .milliseconds(20))
        #expect(!completion.isFinished)
        #expect(completion.resume(returning: 3))
        #expect(try await waiter.value == 3)
    }

    @Test("a resume after the outcome is decided is ignored and says so")
    func resumeAfterFinish() async throws {
        let completion = Completion<String>()
        #expect(completion.resume(returning: "first"))
        #expect(!completion.resume(returning: "second"))
        #expect(!completion.resume(throwing: TimedOut()))
        #expect(try await completion.value == "first")
    }

    @Test("a resume before the wait starts: the wait returns it at once, the time limit is never armed")
    func resumeBeforeWait() async throws {
        let completion = Completion<Int>()
        #expect(completion.resume(returning: 5))
        // A zero time limit would win any race: the outcome is known before the wait starts, so it is not armed.
        #expect(try await completion.wait(timeLimit: .zero, timeoutError: { TimedOut() }) == 5)
        let failed = Completion<Int>()
        failed.resume(throwing: TimedOut())
        await #expect(throws: TimedOut.self) { try await failed.value }
    }

    @Test("a callback waiter is called once: with the outcome when it is decided, or at once if it was")
    func callbackWaiter() async throws {
        let calls = Counter()
        let completion = Completion<Int>()
        completion.onFinish { result in
            #expect((try? result.get()) == 9)
            calls.increment()
        }
        #expect(calls.value == 0)
        #expect(completion.resume(returning: 9))
        #expect(!completion.resume(returning: 10))
        #expect(calls.value == 1)

        let decided = Completion<Int>()
        decided.resume(returning: 4)
        decided.onFinish { result in
            #expect((try? result.get()) == 4)
            calls.increment()
        }
        #expect(calls.value == 2)
    }

    @Test("of many concurrent resumes exactly one decides, and the waiter gets its result")
    func concurrentResumes() async throws {
        for _ in 0..<50 {
            let completion = Completion<Int>()
            let waiter = Task { try await completion.wait(timeLimit: .seconds(30), timeoutError: { TimedOut() }) }
            let winners = await withTaskGroup(of: Int?.self) { group in
                for index in 0..<8 {
                    group.addTask { completion.resume(returning: index) ? index : nil }
                }
                var winners: [Int] = []
                for await winner in group { if let winner { winners.append(winner) } }
                return winners
            }
            #expect(winners.count == 1)
            #expect(try await waiter.value == winners.first)
        }
    }
}

@Suite("withTimeLimit", .timeLimit(.minutes(1)))
struct WithTimeLimitTests {
    @Test("a body that finishes first returns its result, without suspending if it never suspends")
    func bodyFirst() async throws {
        #expect(try await withTimeLimit(.seconds(30), timeoutError: { TimedOut() }, { 1 }) == 1)
        let value = try await withTimeLimit(.seconds(30), timeoutError: { TimedOut() }) {
            try await Task.sleep(for: .milliseconds(10))
            return 2
        }
        #expect(value == 2)
    }

    @Test("the time limit ends the wait with the caller's error, and the body is cancelled")
    func timeLimitFirst() async throws {
        let bodyCancelled = Completion<Bool>()
        await #expect(throws: TimedOut.self) {
            try await withTimeLimit(.milliseconds(50), timeoutError: { TimedOut() }) {
                // Reports whether it was cancelled.
                try? await Task.sleep(for: .seconds(30))
                bodyCancelled.resume(returning: Task.isCancelled)
            }
        }
        #expect(try await bodyCancelled.wait(timeLimit: .seconds(10), timeoutError: { TimedOut() }))
    }

    @Test("cancelling the caller throws CancellationError at once; a caller cancelled already does not start the body")
    func callerCancelled() async throws {
        let waiter = Task {
            try await withTimeLimit(.seconds(30), timeoutError: { TimedOut() }) {
                try? await Task.sleep(for: .seconds(30))
                return 0
            }
        }
        try await Task.sleep(for: .milliseconds(20))
        waiter.cancel()
        await #expect(throws: CancellationError.self) { try await waiter.value }

        let started = Completion<Void>()
        let cancelledFirst = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            return try await withTimeLimit(.seconds(30), timeoutError: { TimedOut() }) { started.resume(returning: ()) }
        }
        await #expect(throws: CancellationError.self) { try await cancelledFirst.value }
        #expect(!started.isFinished)
    }
}

@Suite("TimeoutClock", .timeLimit(.minutes(1)))
struct TimeoutClockTests {
    @Test("a limit fires after its delay; a cancelled one never does; earlier limits fire first")
    func firesInOrderAndCancels() async throws {
        let order = Recorder()
        let clock = ContinuousClock()
        let start = clock.now
        let late = Completion<Void>()
        _ = TimeoutClock.shared.schedule(after: .milliseconds(120)) {
            order.append(2)
            late.resume(returning: ())
        }
        _ = TimeoutClock.shared.schedule(after: .milliseconds(40)) { order.append(1) }
        let cancelled = TimeoutClock.shared.schedule(after: .milliseconds(60)) { order.append(99) }
        cancelled.cancel()
        try await late.value
        #expect(start.duration(to: clock.now) >= .milliseconds(120))
        #expect(order.all == [1, 2])
    }
}
