import Foundation
import Handoff
import HandoffMQTT

/// Scenario 2: one process hosting many labels shuts down and hands all of them off; a successor claims all.
///
/// swift-handoff: one predecessor transport with one `HandoffChannel` per label; "shutdown" initiates all of
/// them at once (concurrent tasks, as a graceful shutdown of the hosting process would) and ends at the last
/// acknowledgement (PUBACK). Then one successor transport watches every label (one channel each, all
/// subscribing at once) and claims every handoff: timed from before the first subscribe to the last claim won.
/// The floor: `count` retained publishes back to back, then one wildcard subscription and the clears.
struct BulkScenario {
    let context: BenchContext
    let labels: Int
    let size: Int

    func run() async throws -> ScenarioResult {
        progress("bulk: floor, \(labels) handoffs")
        let floor = try await context.floor.run(
            scenario: "bulk", prefix: context.prefix("bulk", "floor"), ["--count", String(labels), "--size", String(size)]
        )
        progress("bulk: swift-handoff, \(labels) labels")
        let (ackNs, subscribedNs, claimNs) = try await withTimeout(context.timeout, "bulk (swift-handoff)") { [self] in try await measure() }
        let ackMs = milliseconds(ackNs)
        let claimMs = milliseconds(claimNs)
        let handoffsPerSecond = Double(labels) / (ackMs / 1000)
        let claimsPerSecond = Double(labels) / (claimMs / 1000)
        let floorAck = floor["ack_ms"]?.double
        let floorClaim = floor["claim_ms"]?.double
        let swift = JSON.object([
            ("labels", .int(labels)),
            ("size", .int(size)),
            ("shutdown", .string("\(labels) HandoffChannel.initiate calls started at once on one transport")),
            ("ack_ms", .ms(ackMs)),
            ("handoffs_per_second", .number(handoffsPerSecond)),
            ("subscribed_ms", .ms(milliseconds(subscribedNs))),
            ("claim_ms", .ms(claimMs)),
            ("claims_per_second", .number(claimsPerSecond)),
        ])
        let rows = [
            Row(scenario: "bulk", metric: "shutdown → last PUBACK", unit: "ms", swift: ackMs, floor: floorAck, target: .atMost(1000, "within 1 s")),
            Row(scenario: "bulk", metric: "handoffs/s", unit: "1/s", swift: handoffsPerSecond, floor: floorAck.map { Double(labels) / ($0 / 1000) }),
            Row(scenario: "bulk", metric: "subscribe → last claim", unit: "ms", swift: claimMs, floor: floorClaim),
            Row(scenario: "bulk", metric: "claims/s", unit: "1/s", swift: claimsPerSecond, floor: floor["claims_per_second"]?.double, target: .ratioAtLeast(0.5)),
        ]
        return ScenarioResult(
            name: "bulk", rows: rows, swift: swift, floor: floor,
            notes: ["swift-handoff's shutdown is \(labels) HandoffChannel.initiate calls started at once on one MQTTHandoffTransport"]
        )
    }

    private func measure() async throws -> (ack: UInt64, subscribed: UInt64, claim: UInt64) {
        let prefix = context.prefix("bulk", "swift")
        let names = try (0..<labels).map { try HandoffLabel(String(format: "bulk-%05d", $0)) }
        let payload = BenchState.payload(forEncodedSize: size)

        let predecessor = try await context.transport(prefix: prefix)
        let outgoing = names.map { HandoffChannel<BenchState>(label: $0, transport: predecessor, timeout: .seconds(60)) }
        let start = monotonicNow()
        let lastAck = try await withThrowingTaskGroup(of: UInt64.self) { group in
            for (index, channel) in outgoing.enumerated() {
                group.addTask {
                    try await channel.initiate(BenchState(seq: index, payload: payload))
                    return monotonicNow()
                }
            }
            return try await group.reduce(0) { max($0, $1) }
        }
        await predecessor.shutdown()

        let successor = try await context.transport(prefix: prefix)
        let incoming = names.map { HandoffChannel<BenchState>(label: $0, transport: successor, timeout: .seconds(60)) }
        let claimStart = monotonicNow()
        let lastSubscribed = Locked<UInt64>(0)
        let lastClaim = try await withThrowingTaskGroup(of: UInt64.self) { group in
            for (index, channel) in incoming.enumerated() {
                group.addTask {
                    let notices = try await channel.subscribe()
                    let subscribed = monotonicNow()
                    lastSubscribed.withLock { $0 = max($0, subscribed) }
                    for await notice in notices {
                        guard case .available = notice else { continue }
                        let batch = try await channel.complete()
                        if let interruption = batch.interruption { throw interruption }
                        if batch.handoffs.contains(where: { $0.state.seq == index }) { return monotonicNow() }
                    }
                    throw BenchError("bulk: the stream of label \(index) ended before its handoff was claimed")
                }
            }
            return try await group.reduce(0) { max($0, $1) }
        }
        await successor.shutdown()
        return (lastAck - start, lastSubscribed.value - claimStart, lastClaim - claimStart)
    }
}
