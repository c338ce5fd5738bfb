import Foundation
import Handoff
import HandoffMQTT

/// Scenario 1: one handoff of a small state at a time, initiate → the successor has merged it.
///
/// swift-handoff: `HandoffChannel.initiate` on the predecessor's transport; the successor's channel is
/// subscribed, its stream reports `.available`, it calls `complete()` (which claims: the clear and its
/// verdict) and merges the batch. The round is timed from just before `initiate` to just after the merge;
/// the next round starts when the merge is done and the previous initiate has returned (its PUBACK).
/// The floor: the same four messages without any of it (Benchmarks/Floor/README.md, "latency").
struct LatencyScenario {
    let context: BenchContext
    let count: Int
    let warmup: Int
    let size: Int

    func run() async throws -> ScenarioResult {
        progress("latency: floor, \(count) handoffs of \(size) bytes")
        let floor = try await context.floor.run(
            scenario: "latency", prefix: context.prefix("latency", "floor"), ["--count", String(count), "--size", String(size)]
        )
        progress("latency: swift-handoff, \(warmup) warm-up + \(count) handoffs")
        let (samples, stateBytes, envelopeBytes) = try await withTimeout(context.timeout, "latency (swift-handoff)") { [self] in
            try await measure()
        }
        let stats = Stats(nanoseconds: samples)
        let swift = JSON.object(
            [("count", .int(count)), ("warmup", .int(warmup)), ("state_bytes", .int(stateBytes)), ("envelope_bytes", .int(envelopeBytes))]
                + stats.fields()
        )
        let rows = [
            Row(
                scenario: "latency", metric: "p50", unit: "ms", swift: stats.p50, floor: floor["p50_ms"]?.double, target: .ratioAtMost(1.3)),
            Row(scenario: "latency", metric: "p99", unit: "ms", swift: stats.p99, floor: floor["p99_ms"]?.double, target: .ratioAtMost(1.5)),
            Row(scenario: "latency", metric: "max", unit: "ms", swift: stats.max, floor: floor["max_ms"]?.double),
        ]
        return ScenarioResult(name: "latency", rows: rows, swift: swift, floor: floor)
    }

    private func measure() async throws -> (samples: [UInt64], stateBytes: Int, envelopeBytes: Int) {
        let prefix = context.prefix("latency", "swift")
        let predecessor = try await context.transport(prefix: prefix)
        let successor = try await context.transport(prefix: prefix)
        let label = try HandoffLabel("latency")
        let outgoing = HandoffChannel<BenchState>(label: label, transport: predecessor)
        let incoming = HandoffChannel<BenchState>(label: label, transport: successor)
        let notices = try await incoming.subscribe()

        let (merges, merged) = AsyncStream.makeStream(of: (seq: Int, at: UInt64).self)
        // The successor's task runs on its connection's thread: the notice and the verdict resume it there.
        let consumer = Task(executorPreference: successor.executor) {
            var state = BenchState(seq: -1, payload: "")
            for await notice in notices {
                guard case .available = notice else { continue }
                let batch = try await incoming.complete()
                guard !batch.handoffs.isEmpty else { continue }
                state = try batch.merged(into: state, using: takeNewest)
                let now = monotonicNow()
                merged.yield((state.seq, now))
            }
            merged.finish()
        }

        let payload = BenchState.payload(forEncodedSize: size)
        var samples: [UInt64] = []
        samples.reserveCapacity(count)
        var iterator = merges.makeAsyncIterator()
        var envelopeBytes = 0
        for round in 0..<(warmup + count) {
            let state = BenchState(seq: round, payload: payload)
            let start = monotonicNow()
            // Like the floor's predecessor, this task publishes (and here also waits for the PUBACK, which
            // arrives about when the successor receives the handoff); the round ends at the successor's merge.
            let envelope = try await outgoing.initiate(state)
            guard let (seq, end) = await iterator.next() else {
                _ = try await consumer.value
                throw BenchError("the successor stopped after round \(round)")
            }
            guard seq == round else { throw BenchError("round \(round): the successor merged round \(seq)") }
            if round == warmup + count - 1 { envelopeBytes = envelope.encoded().count }
            if round >= warmup { samples.append(end - start) }
        }
        let stateBytes = try JSONStateCodec().encode(BenchState(seq: 0, payload: payload)).count
        consumer.cancel()
        await predecessor.shutdown()
        await successor.shutdown()
        return (samples, stateBytes, envelopeBytes)
    }
}
