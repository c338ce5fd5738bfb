import Foundation
import Handoff
import HandoffService
import Logging
import MetricsTestKit
import MosquittoTestKit
import ServiceLifecycle
import ServiceLifecycleTestKit
import Testing

/// The service's lifecycle over the in-process transport: graceful shutdown hands off, successors merge, merges
/// never lose the participant's own updates, an unencodable state is reported.
@Suite("HandoffService lifecycle (in-process transport)", .timeLimit(.minutes(1)))
struct GracefulShutdownTests {
    @Test("run() a second time throws, and the first run goes on")
    func runTwiceThrows() async throws {
        let label = uniqueLabel("twice")
        let counter = TestCounter(label: label)
        let service = HandoffService(transport: LocalHandoffTransport(hub: LocalHandoffHub()), participants: [counter])
        let running = await RunningService.start(service)
        await #expect(throws: HandoffError.alreadyStarted("HandoffService.run()")) { try await service.run() }
        await counter.add(3)
        #expect(try await running.stop().outcome(for: label)?.kind == .handedOff)
    }

    @Test("graceful shutdown (ServiceLifecycleTestKit) hands the state off to a successor")
    func gracefulShutdownHandsOff() async throws {
        let hub = LocalHandoffHub()
        let label = uniqueLabel("graceful")
        let metrics = TestMetrics()
        let counter = TestCounter(label: label)
        let service = HandoffService(
            transport: LocalHandoffTransport(hub: hub),
            participants: [counter],
            configuration: .init(metricsFactory: metrics)
        )

        try await testGracefulShutdown { trigger in
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await service.run() }
                await service.waitUntilReady()
                await counter.add(41)
                await counter.add(1)
                trigger.triggerGracefulShutdown()
                try await group.waitForAll()
            }
        }

        let report = try #require(service.shutdownReport)
        #expect(report.outcomes.count == 1)
        #expect(report.outcome(for: label)?.kind == .handedOff)
        #expect(hub.waiting(label).count == 1)
        #expect(try metrics.expectCounter("handoff_initiated_total").totalValue == 1)
        #expect(try metrics.expectTimer("handoff_initiate_duration").values.count == 1)

        let successor = TestCounter(label: label)
        let successorMetrics = TestMetrics()
        let running = await RunningService.start(
            HandoffService(
                transport: LocalHandoffTransport(hub: hub),
                participants: [successor],
                configuration: .init(metricsFactory: successorMetrics)
            )
        )
        #expect(await successor.handoffState == 42)
        #expect(await successor.merged == [42])
        #expect(try successorMetrics.expectCounter("handoff_claimed_total").totalValue == 1)
        #expect(hub.waiting(label).isEmpty)
        _ = try await running.stop()
    }

    @Test("merging runs in the participant's isolation: no update of its own is lost to a merge")
    func mergesDoNotLoseUpdates() async throws {
        let hub = LocalHandoffHub()
        let label = uniqueLabel("isolation")
        let counter = TestCounter(label: label)
        let running = await RunningService.start(
            HandoffService(transport: LocalHandoffTransport(hub: hub), participants: [counter])
        )
        let predecessors = HandoffChannel<Int>(label: label, transport: LocalHandoffTransport(hub: hub))
        let handoffs = 100
        let increments = 2_000
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                for _ in 0..<handoffs { try await predecessors.initiate(1) }
            }
            group.addTask {
                for _ in 0..<increments { await counter.add(1) }
            }
            try await group.waitForAll()
        }
        #expect(await eventually { await counter.merged.count == handoffs })
        #expect(await counter.handoffState == handoffs + increments)
        _ = try await running.stop()
    }

    @Test("a state that cannot be encoded: nothing is published, the outcome says so, it is counted")
    func encodingFailure() async throws {
        let hub = LocalHandoffHub()
        let label = uniqueLabel("encoding")
        let metrics = TestMetrics()
        let participant = Unencodable(label: label)
        let running = await RunningService.start(
            HandoffService(
                transport: LocalHandoffTransport(hub: hub),
                participants: [participant],
                configuration: .init(metricsFactory: metrics)
            )
        )
        let report = try await running.stop()
        let outcome = try #require(report.outcome(for: label))
        #expect(outcome.kind == .encodingFailed)
        #expect(outcome.handoffID == nil)
        #expect(outcome.detail?.contains("nothing was published") == true)
        #expect(outcome.detail?.contains("not a number") == true)
        #expect(hub.waiting(label).isEmpty)
        #expect(
            try metrics.expectCounter("handoff_initiate_failed_total", [("reason", "encoding-failed")]).totalValue == 1
        )
        #expect(try metrics.expectCounter("handoff_initiated_total").totalValue == 0)
    }

    @Test("many participants of one type, one transport: every one is handed off and taken over")
    func manyParticipants() async throws {
        let hub = LocalHandoffHub()
        let labels = (0..<500).map { uniqueLabel("many-\($0)") }
        let counters = labels.enumerated().map { TestCounter(label: $1, count: $0) }
        let running = await RunningService.start(
            HandoffService(transport: LocalHandoffTransport(hub: hub), participants: counters)
        )
        let report = try await running.stop()
        #expect(report.handedOff.count == labels.count)

        let successors = labels.map { TestCounter(label: $0) }
        let next = await RunningService.start(
            HandoffService(transport: LocalHandoffTransport(hub: hub), participants: successors)
        )
        for (index, successor) in successors.enumerated() {
            #expect(await successor.handoffState == index)
        }
        _ = try await next.stop()
    }
}

/// A state whose encoding always fails.
struct NotANumber: Codable, Sendable {
    struct Failure: Error, CustomStringConvertible {
        var description: String { "not a number" }
    }

    init() {}
    init(from decoder: any Decoder) throws { throw Failure() }
    func encode(to encoder: any Encoder) throws { throw Failure() }
}

actor Unencodable: HandoffParticipant {
    nonisolated let handoffLabel: HandoffLabel
    var handoffState = NotANumber()
    static let handoffMergeStrategy = KeepCurrentStrategy<NotANumber>()
    init(label: HandoffLabel) { handoffLabel = label }
}

/// A participant whose merge strategy refuses negative counts.
actor RefusesNegative: HandoffParticipant {
    struct Negative: Error {}
    nonisolated let handoffLabel: HandoffLabel
    var handoffState = 0
    static let handoffMergeStrategy = FoldStrategy<Int> { count, handoff in
        guard handoff.state >= 0 else { throw Negative() }
        return count + handoff.state
    }
    init(label: HandoffLabel) { handoffLabel = label }
}
