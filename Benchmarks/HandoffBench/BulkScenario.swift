import Foundation
import Handoff
import HandoffMQTT
import HandoffService
import Logging
import ServiceLifecycle

/// Scenario 2: one process hosting many labels shuts down gracefully and hands all of them off; a successor
/// process claims them all.
///
/// swift-handoff: the predecessor is a `HandoffService` hosting `labels` participants on one
/// `MQTTHandoffTransport`, run by a `ServiceGroup`. Once it is ready (every label subscribed), the bench triggers
/// the group's graceful shutdown: the service snapshots every participant and initiates all handoffs at once;
/// timed from the trigger until `run()` returned, i.e. the last acknowledgement (PUBACK). The successor is a
/// second `HandoffService` with one participant per label on a transport of its own: timed from the start of
/// its `run()` until `waitUntilReady()` returned, i.e. every label subscribed and every waiting handoff claimed
/// and merged. The floor: `count` retained publishes back to back, then one wildcard subscription and the clears.
///
/// `durable` runs the same on a broker with the repository's durability settings (store saved after every change): the
/// scenario `durable`, whose target is the issue's: every label subscribed, and all handed off, each within 5 s.
struct BulkScenario {
    let context: BenchContext
    let labels: Int
    let size: Int
    var durable = false

    private var name: String { durable ? "durable" : "bulk" }

    func run() async throws -> ScenarioResult {
        progress("\(name): floor, \(labels) handoffs")
        let floor = try await context.floor.run(
            scenario: "bulk", prefix: context.prefix(name, "floor"), ["--count", String(labels), "--size", String(size)]
        )
        progress("\(name): swift-handoff, HandoffService with \(labels) participants")
        let measured = try await withTimeout(context.timeout, "\(name) (swift-handoff)") { [self] in try await measure() }
        let ackMs = milliseconds(measured.ack)
        let claimMs = milliseconds(measured.claim)
        let handoffsPerSecond = Double(labels) / (ackMs / 1000)
        let claimsPerSecond = Double(labels) / (claimMs / 1000)
        let floorAck = floor["ack_ms"]?.double
        let floorClaim = floor["claim_ms"]?.double
        let swift = JSON.object([
            ("labels", .int(labels)),
            ("size", .int(size)),
            ("predecessor_ready_ms", .ms(milliseconds(measured.predecessorReady))),
            ("ack_ms", .ms(ackMs)),
            ("report_duration_ms", .ms(measured.reportMs)),
            ("handed_off", .int(measured.handedOff)),
            ("handoffs_per_second", .number(handoffsPerSecond)),
            ("claim_ms", .ms(claimMs)),
            ("merged", .int(measured.merged)),
            ("claims_per_second", .number(claimsPerSecond)),
        ])
        let rows = [
            Row(
                scenario: name, metric: "predecessor start → all \(labels) labels subscribed", unit: "ms",
                swift: milliseconds(measured.predecessorReady),
                floor: nil, target: durable ? .atMost(5000, "within 5 s") : nil
            ),
            Row(
                scenario: name, metric: "shutdown → last PUBACK", unit: "ms", swift: ackMs, floor: floorAck,
                target: durable ? .atMost(5000, "within 5 s") : .atMost(1000, "within 1 s")
            ),
            Row(
                scenario: name, metric: "handoffs/s", unit: "1/s", swift: handoffsPerSecond,
                floor: floorAck.map { Double(labels) / ($0 / 1000) }),
            Row(scenario: name, metric: "successor start → last claim", unit: "ms", swift: claimMs, floor: floorClaim),
            Row(
                scenario: name, metric: "claims/s", unit: "1/s", swift: claimsPerSecond, floor: floor["claims_per_second"]?.double,
                target: durable ? nil : .ratioAtLeast(0.8)
            ),
        ]
        return ScenarioResult(
            name: name, rows: rows, swift: swift, floor: floor,
            notes: [
                "swift-handoff: a HandoffService with \(labels) participants shut down through ServiceGroup.triggerGracefulShutdown(); "
                    + "the successor is a HandoffService with a participant per label, ready once all are claimed and merged"
                    + (durable ? "; on a broker that saves its store after every change (broker/mosquitto.conf's durability settings)" : "")
            ]
        )
    }

    private struct Measured: Sendable {
        var predecessorReady: UInt64 = 0
        var ack: UInt64 = 0
        var reportMs = 0.0
        var handedOff = 0
        var claim: UInt64 = 0
        var merged = 0
    }

    private func measure() async throws -> Measured {
        let prefix = context.prefix(name, "swift")
        let names = try (0..<labels).map { try HandoffLabel(String(format: "bulk-%05d", $0)) }
        let payload = BenchState.payload(forEncodedSize: size)
        let logger = Logger(label: "handoff-bench")
        var measured = Measured()

        // The predecessor: running, every label subscribed, then shut down gracefully.
        let predecessor = try await context.transport(prefix: prefix)
        let outgoing = HandoffService(
            transport: predecessor,
            participants: names.enumerated().map { BenchParticipant(label: $1, state: BenchState(seq: $0, payload: payload), merged: nil) },
            configuration: HandoffService.Configuration(shutdownBudget: .seconds(60)),
            logger: logger
        )
        let predecessorGroup = ServiceGroup(configuration: ServiceGroupConfiguration(services: [.init(service: outgoing)], logger: logger))
        let readyStart = monotonicNow()
        let predecessorRun = Task { try await predecessorGroup.run() }
        await outgoing.waitUntilReady()
        measured.predecessorReady = monotonicNow() - readyStart
        let shutdown = monotonicNow()
        await predecessorGroup.triggerGracefulShutdown()
        try await predecessorRun.value
        measured.ack = monotonicNow() - shutdown
        guard let report = outgoing.shutdownReport else { throw BenchError("bulk: the predecessor's service left no shutdown report") }
        measured.reportMs = Double(report.duration.components.seconds) * 1000 + Double(report.duration.components.attoseconds) / 1e15
        measured.handedOff = report.handedOff.count
        guard report.failures.isEmpty else {
            throw BenchError(
                "bulk: \(report.failures.count) of \(labels) states were not handed off: \(report.failures.first.map { "\($0)" } ?? "")")
        }
        await predecessor.shutdown()

        // The successor: a new process's service, ready once every waiting handoff is claimed and merged.
        let successor = try await context.transport(prefix: prefix)
        let merged = Locked(0)
        // Its teardown below fails every handoff on purpose: do not log 10,000 errors about it.
        var quiet = logger
        quiet.logLevel = .critical
        let incoming = HandoffService(
            transport: successor,
            participants: names.map { BenchParticipant(label: $0, state: BenchState(seq: -1, payload: ""), merged: merged) },
            configuration: HandoffService.Configuration(shutdownBudget: .milliseconds(200)),
            logger: quiet
        )
        let successorGroup = ServiceGroup(configuration: ServiceGroupConfiguration(services: [.init(service: incoming)], logger: quiet))
        let claimStart = monotonicNow()
        let successorRun = Task { try await successorGroup.run() }
        await incoming.waitUntilReady()
        measured.claim = monotonicNow() - claimStart
        measured.merged = merged.value
        guard measured.merged == labels else { throw BenchError("bulk: the successor merged \(measured.merged) of \(labels) handoffs") }
        // The successor would hand its states off in turn: close its connection first, so that it does not.
        await successor.shutdown()
        await successorGroup.triggerGracefulShutdown()
        _ = try? await successorRun.value
        return measured
    }
}

/// One label's state in a `HandoffService`: merging takes the newest handoff and counts the merges.
actor BenchParticipant: HandoffParticipant {
    nonisolated let handoffLabel: HandoffLabel
    var handoffState: BenchState
    private let merged: Locked<Int>?

    static var handoffMergeStrategy: TakeNewestStrategy<BenchState> { TakeNewestStrategy() }

    init(label: HandoffLabel, state: BenchState, merged: Locked<Int>?) {
        self.handoffLabel = label
        self.handoffState = state
        self.merged = merged
    }

    func didMergeHandoffs(_ handoffs: [ClaimedHandoff<BenchState>]) {
        merged?.withLock { $0 += handoffs.count }
    }
}
