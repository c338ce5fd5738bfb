import Foundation
import Handoff
import HandoffService
import ServiceLifecycle
import ServiceLifecycleTestKit
import Synchronization
import Testing

/// A counter participant: handoffs are added once each.
actor TestCounter: HandoffParticipant {
    nonisolated let handoffLabel: HandoffLabel
    var handoffState: Int
    /// The states of the handoffs merged so far, in merge order.
    private(set) var merged: [Int] = []
    static let handoffMergeStrategy = FoldStrategy<Int> { count, handoff in count + handoff.state }

    init(label: HandoffLabel, count: Int = 0) {
        handoffLabel = label
        handoffState = count
    }

    func add(_ amount: Int) { handoffState += amount }

    func didMergeHandoffs(_ handoffs: [ClaimedHandoff<Int>]) {
        merged += handoffs.map(\.state)
    }
}

/// A label unique to one test run.
func uniqueLabel(_ name: String) -> HandoffLabel {
    // Force-try is fine: the name is ASCII and short.
    try! HandoffLabel("service-test/\(name)/\(UUID().uuidString.prefix(8))")
}

/// A ``HandoffService`` running under a graceful shutdown trigger of its own (ServiceLifecycleTestKit), as a
/// ServiceGroup would run it.
struct RunningService: Sendable {
    let service: HandoffService
    let trigger: GracefulShutdownTestTrigger
    let task: Task<Void, any Error>

    /// Starts `service` and returns once it is ready (subscribed, and what was waiting merged).
    static func start(_ service: HandoffService) async -> RunningService {
        let (triggers, continuation) = AsyncStream.makeStream(of: GracefulShutdownTestTrigger.self)
        let task = Task {
            try await testGracefulShutdown { trigger in
                continuation.yield(trigger)
                continuation.finish()
                try await service.run()
            }
        }
        var iterator = triggers.makeAsyncIterator()
        // The stream yields exactly once before it finishes.
        let trigger = await iterator.next()!
        await service.waitUntilReady()
        return RunningService(service: service, trigger: trigger, task: task)
    }

    /// Triggers the graceful shutdown and returns the service's report once `run()` has returned.
    func stop() async throws -> HandoffShutdownReport {
        trigger.triggerGracefulShutdown()
        try await task.value
        return try #require(service.shutdownReport)
    }
}

/// A fresh temporary directory.
func temporaryDirectory(_ name: String) -> URL {
    let url = FileManager.default.temporaryDirectory
        .appendingPathComponent("handoff-service-tests-\(name)-\(UUID().uuidString.prefix(8))", isDirectory: true)
    try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}
