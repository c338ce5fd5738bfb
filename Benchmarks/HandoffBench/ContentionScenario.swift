import Foundation
import Handoff
import HandoffMQTT
import MosquittoClient

/// Scenario 4: many successors race for every handoff; how long until each knows who won, and what it costs.
///
/// swift-handoff runs twice: with its default ranked claims (docs/PROTOCOL.md §5, "Ranked claims": the first-ranked
/// successor claims at once, the others only if no verdict came in their rank's wait), whose figures are the table's
/// swift-handoff column, and naive (`claimRanking: .off`, every successor claims at once, as the floor does), whose
/// figures are the "naive" rows beside the same floor.
///
/// The method of the floor (Benchmarks/Floor/README.md, "contention"), with swift-handoff's participants:
/// 1. The predecessor initiates the first half (`count/2`) and waits for every acknowledgement.
/// 2. `successors` transports connect; then all their channels subscribe at once and race (`complete()`,
///    which claims each handoff and waits for the verdict) for the retained first half. The bench waits until
///    every handoff has a winner, no claim is in flight, and nothing has been delivered for 250 ms.
/// 3. The predecessor initiates the second half live, `--pace-us` apart; the bench waits as in 2.
///
/// Claim resolution, per (successor, handoff) pair: from the moment the handoff reached that successor's
/// MQTT client (a listener on `client.messages()`, which also counts every message delivered) to the moment
/// the successor knew the verdict: when its `claim` returned if it claimed before any claim had arrived, else
/// when the first claim (the verdict) reached its client.
struct ContentionScenario {
    let context: BenchContext
    let count: Int
    let successors: Int
    let size: Int
    let paceMicroseconds: Int

    func run() async throws -> ScenarioResult {
        progress("contention: floor, \(successors) successors, \(count) handoffs")
        let floor = try await context.floor.run(
            scenario: "contention", prefix: context.prefix("contention", "floor"),
            ["--count", String(count), "--size", String(size), "--successors", String(successors), "--pace-us", String(paceMicroseconds)]
        )
        progress("contention: swift-handoff (ranked claims), \(successors) successors, \(count) handoffs")
        let ranking = MQTTHandoffTransport.Options().claimRanking
        let measured = try await withTimeout(context.timeout, "contention (swift-handoff)") { [self] in
            try await measure(ranking: ranking, side: "swift")
        }
        progress("contention: swift-handoff naive (ranking off), \(successors) successors, \(count) handoffs")
        let naive = try await withTimeout(context.timeout, "contention (swift-handoff, naive)") { [self] in
            try await measure(ranking: .off, side: "swift-naive")
        }
        let retained = Stats(nanoseconds: measured.retained)
        let live = Stats(nanoseconds: measured.live)
        let naiveRetained = Stats(nanoseconds: naive.retained)
        let naiveLive = Stats(nanoseconds: naive.live)
        var fields: [(String, JSON)] = [
            ("count", .int(count)), ("successors", .int(successors)), ("size", .int(size)), ("pace_us", .int(paceMicroseconds)),
            ("claim_ranking", .string("\(ranking)")),
        ]
        fields += figures(of: measured)
        let speedup: Double? = retained.p99 > 0 ? naiveRetained.p99 / retained.p99 : nil
        fields.append(("retained_p99_speedup_over_naive", speedup.map(JSON.number) ?? .null))
        fields.append(("naive", .object(figures(of: naive))))
        let perHandoff = Double(measured.delivered) / Double(count)
        let naivePerHandoff = Double(naive.delivered) / Double(count)
        let rows = [
            Row(
                scenario: "contention", metric: "live claim resolution p50", unit: "ms", swift: live.p50,
                floor: floor["live_resolution_p50_ms"]?.double),
            Row(
                scenario: "contention", metric: "live claim resolution p99", unit: "ms", swift: live.p99,
                floor: floor["live_resolution_p99_ms"]?.double,
                target: .atMost(10, "")
            ),
            Row(
                scenario: "contention", metric: "retained claim resolution p50", unit: "ms", swift: retained.p50,
                floor: floor["retained_resolution_p50_ms"]?.double
            ),
            Row(
                scenario: "contention", metric: "retained claim resolution p99", unit: "ms", swift: retained.p99,
                floor: floor["retained_resolution_p99_ms"]?.double
            ),
            Row(
                scenario: "contention", metric: "retained p99, naive / ranked", unit: "×", swift: speedup, floor: nil,
                target: .atLeast(5, "")
            ),
            Row(
                scenario: "contention", metric: "messages delivered per handoff", unit: "msgs", swift: perHandoff,
                floor: floor["messages_per_handoff"]?.double, target: .atMost(2.5 * Double(successors), "2.5 × successors")
            ),
            Row(
                scenario: "contention", metric: "handoffs lost or merged twice", unit: "handoffs",
                swift: Double(measured.lost + measured.duplicates),
                floor: floor["lost"]?.double.map { $0 + (floor["disagreements"]?.double ?? 0) }, target: .atMost(0, "")
            ),
            Row(
                scenario: "contention", metric: "naive: live claim resolution p50", unit: "ms", swift: naiveLive.p50,
                floor: floor["live_resolution_p50_ms"]?.double),
            Row(
                scenario: "contention", metric: "naive: live claim resolution p99", unit: "ms", swift: naiveLive.p99,
                floor: floor["live_resolution_p99_ms"]?.double),
            Row(
                scenario: "contention", metric: "naive: retained claim resolution p50", unit: "ms", swift: naiveRetained.p50,
                floor: floor["retained_resolution_p50_ms"]?.double
            ),
            Row(
                scenario: "contention", metric: "naive: retained claim resolution p99", unit: "ms", swift: naiveRetained.p99,
                floor: floor["retained_resolution_p99_ms"]?.double
            ),
            Row(
                scenario: "contention", metric: "naive: messages delivered per handoff", unit: "msgs", swift: naivePerHandoff,
                floor: floor["messages_per_handoff"]?.double
            ),
            Row(
                scenario: "contention", metric: "naive: handoffs lost or merged twice", unit: "handoffs",
                swift: Double(naive.lost + naive.duplicates),
                floor: floor["lost"]?.double.map { $0 + (floor["disagreements"]?.double ?? 0) }, target: .atMost(0, "")
            ),
        ]
        return ScenarioResult(
            name: "contention", rows: rows, swift: .object(fields), floor: floor,
            notes: [
                "the p99 target applies to the live half (the floor's README: the retained half measures the broker's fan-out of a burst)",
                "swift-handoff ranks its claims (\(ranking)); the naive rows are swift-handoff with claimRanking .off, every successor claiming at once like the floor",
            ]
        )
    }

    /// The JSON figures of one run.
    private func figures(of measured: Measured) -> [(String, JSON)] {
        let retained = Stats(nanoseconds: measured.retained)
        let live = Stats(nanoseconds: measured.live)
        let all = Stats(nanoseconds: measured.retained + measured.live)
        var fields: [(String, JSON)] = []
        fields += all.fields("resolution_")
        fields.append(("pairs", .int(all.count)))
        fields += retained.fields("retained_resolution_")
        fields += live.fields("live_resolution_")
        fields += [
            ("messages_per_handoff", .number(Double(measured.delivered) / Double(count))),
            ("claims_per_handoff", .number(Double(measured.claims) / Double(count))),
            ("retained_phase_ms", .ms(milliseconds(measured.retainedPhase))),
            ("live_phase_ms", .ms(milliseconds(measured.livePhase))),
            ("agreement", .bool(measured.lost == 0 && measured.duplicates == 0)),
            ("lost", .int(measured.lost)),
            ("merged_twice", .int(measured.duplicates)),
            ("bystanders", .int(measured.bystanders)),
        ]
        return fields
    }

    private struct Measured: Sendable {
        var retained: [UInt64] = []
        var live: [UInt64] = []
        var delivered = 0
        var claims = 0
        var retainedPhase: UInt64 = 0
        var livePhase: UInt64 = 0
        var lost = 0
        var duplicates = 0
        var bystanders = 0
    }

    /// A participant with the library's default MQTT settings but `ranking`.
    private func transport(prefix: String, ranking: MQTTHandoffTransport.ClaimRanking) async throws -> MQTTHandoffTransport {
        try await MQTTHandoffTransport.connect(
            configuration: MQTTConfiguration(host: context.host, port: context.port),
            options: MQTTHandoffTransport.Options(prefix: prefix, claimRanking: ranking)
        )
    }

    private func measure(ranking: MQTTHandoffTransport.ClaimRanking, side: String) async throws -> Measured {
        let prefix = context.prefix("contention", side)
        let label = try HandoffLabel("contention")
        let payload = BenchState.payload(forEncodedSize: size)
        let half = count / 2

        let predecessor = try await transport(prefix: prefix, ranking: ranking)
        let outgoing = HandoffChannel<BenchState>(label: label, transport: predecessor, timeout: .seconds(60))
        let firstHalf = try await withThrowingTaskGroup(of: String.self) { group in
            for index in 0..<half {
                group.addTask { try await outgoing.initiate(BenchState(seq: index, payload: payload)).id.rawValue }
            }
            return try await group.reduce(into: [String]()) { $0.append($1) }
        }

        var transports: [MQTTHandoffTransport] = []
        var probes: [ClaimProbe] = []
        for _ in 0..<successors {
            let transport = try await transport(prefix: prefix, ranking: ranking)
            let probe = ClaimProbe(topicPrefix: transport.topics.handoff(label, id: ""))
            probe.listen(to: transport.client.messages())
            transports.append(transport)
            probes.append(probe)
        }
        let subscribed = Locked(0)
        let subscribeStart = monotonicNow()
        let consumers = zip(transports, probes).map { transport, probe in
            Task {
                let channel = HandoffChannel<BenchState>(
                    label: label, transport: RecordingTransport(inner: transport, probe: probe), timeout: .seconds(60)
                )
                let notices = try await channel.subscribe()
                subscribed.withLock { $0 += 1 }
                for await notice in notices {
                    guard case .available = notice else { continue }
                    let batch = try await channel.complete()
                    probe.won(batch.handoffs.map(\.id.rawValue))
                    if let interruption = batch.interruption { throw interruption }
                }
            }
        }
        let retainedSettled = try await settle(firstHalf, probes, consumers)
        progress("contention: retained half resolved; initiating the second half live")

        let liveStart = monotonicNow()
        var initiates: [Task<String, any Error>] = []
        for index in half..<count {
            initiates.append(Task { try await outgoing.initiate(BenchState(seq: index, payload: payload)).id.rawValue })
            if paceMicroseconds > 0 { try await Task.sleep(for: .microseconds(paceMicroseconds)) }
        }
        var secondHalf: [String] = []
        for task in initiates { secondHalf.append(try await task.value) }
        let liveSettled = try await settle(firstHalf + secondHalf, probes, consumers)

        for consumer in consumers { consumer.cancel() }
        await predecessor.shutdown()
        for transport in transports { await transport.shutdown() }

        var measured = Measured()
        measured.retainedPhase = retainedSettled - subscribeStart
        measured.livePhase = liveSettled - liveStart
        let records = probes.map(\.record.value)
        measured.delivered = records.reduce(0) { $0 + $1.delivered }
        for (ids, isLive) in [(firstHalf, false), (secondHalf, true)] {
            for id in ids {
                var winners = 0
                var claims = 0
                for record in records {
                    claims = max(claims, record.claimsSeen[id] ?? 0)
                    if record.won.contains(id) { winners += 1 }
                    guard let received = record.received[id] else {
                        if record.firstClaim[id] != nil { measured.bystanders += 1 }
                        continue
                    }
                    let firstClaim = record.firstClaim[id]
                    let verdict: UInt64?
                    if let call = record.claimCalls[id], call.start <= (firstClaim ?? .max) {
                        verdict = call.end
                    } else {
                        verdict = firstClaim
                    }
                    guard let verdict, verdict >= received else { continue }
                    if isLive { measured.live.append(verdict - received) } else { measured.retained.append(verdict - received) }
                }
                measured.claims += claims
                if winners == 0 { measured.lost += 1 }
                if winners > 1 { measured.duplicates += 1 }
            }
        }
        return measured
    }

    /// Waits until every handoff in `ids` has a winner and no claim is in flight (returns that moment), then
    /// until nothing has been delivered to any successor for 250 ms.
    private func settle(_ ids: [String], _ probes: [ClaimProbe], _ consumers: [Task<Void, any Error>]) async throws -> UInt64 {
        try await waitUntil(context.timeout, "every handoff to have a winner") {
            let records = probes.map(\.record.value)
            guard records.allSatisfy({ $0.claimsInFlight == 0 }) else { return false }
            return ids.allSatisfy { id in records.contains { $0.won.contains(id) } }
        }
        let settled = monotonicNow()
        try await waitUntil(context.timeout, "deliveries to stop") {
            let last = probes.map { $0.record.value.lastDelivery }.max() ?? 0
            return monotonicNow() - last >= 250_000_000
        }
        return settled
    }
}

/// What one successor saw and did, per handoff id.
final class ClaimProbe: Sendable {
    struct ClaimCall: Sendable {
        var start: UInt64
        var end: UInt64
    }

    struct Record: Sendable {
        /// When the handoff first reached the client.
        var received: [String: UInt64] = [:]
        /// When the first claim (zero-length message with `handoff-claim-by`) reached the client.
        var firstClaim: [String: UInt64] = [:]
        var claimsSeen: [String: Int] = [:]
        var claimCalls: [String: ClaimCall] = [:]
        var claimsInFlight = 0
        var won: Set<String> = []
        /// Messages delivered on the label's handoff topics.
        var delivered = 0
        var lastDelivery: UInt64 = 0
    }

    let record = Locked(Record())
    let topicPrefix: String

    init(topicPrefix: String) {
        self.topicPrefix = topicPrefix
    }

    func listen(to messages: AsyncStream<MQTTMessage>) {
        let (record, topicPrefix) = (self.record, self.topicPrefix)
        Task {
            for await message in messages {
                let now = monotonicNow()
                guard message.topic.hasPrefix(topicPrefix) else { continue }
                let id = String(message.topic.dropFirst(topicPrefix.count))
                let isClaim = message.payload.isEmpty && message.properties.userProperty("handoff-claim-by") != nil
                record.withLock { record in
                    record.delivered += 1
                    record.lastDelivery = now
                    if !message.payload.isEmpty {
                        if record.received[id] == nil { record.received[id] = now }
                    } else if isClaim {
                        if record.firstClaim[id] == nil { record.firstClaim[id] = now }
                        record.claimsSeen[id, default: 0] += 1
                    }
                }
            }
        }
    }

    func claimStarted() { record.withLock { $0.claimsInFlight += 1 } }

    func claimEnded(_ id: String, start: UInt64, end: UInt64) {
        record.withLock { record in
            record.claimsInFlight -= 1
            record.claimCalls[id] = ClaimCall(start: start, end: end)
        }
    }

    func won(_ ids: [String]) {
        record.withLock { $0.won.formUnion(ids) }
    }
}

/// A transport that times `claim` and passes everything else through.
struct RecordingTransport: HandoffTransport {
    let inner: MQTTHandoffTransport
    let probe: ClaimProbe

    var origin: HandoffOrigin { inner.origin }

    func watch(_ label: HandoffLabel) async throws -> AsyncStream<HandoffNotice> { try await inner.watch(label) }
    func unwatch(_ label: HandoffLabel) async throws { try await inner.unwatch(label) }
    func pending(_ label: HandoffLabel) async throws -> [HandoffEnvelope] { try await inner.pending(label) }

    func claim(_ envelope: HandoffEnvelope, timeout: Duration) async throws -> Bool {
        probe.claimStarted()
        let start = monotonicNow()
        do {
            let won = try await inner.claim(envelope, timeout: timeout)
            probe.claimEnded(envelope.id.rawValue, start: start, end: monotonicNow())
            return won
        } catch {
            probe.claimEnded(envelope.id.rawValue, start: start, end: monotonicNow())
            throw error
        }
    }

    func release(_ envelope: HandoffEnvelope, timeout: Duration) async throws { try await inner.release(envelope, timeout: timeout) }

    func initiate(_ envelope: HandoffEnvelope, timeout: Duration) async throws { try await inner.initiate(envelope, timeout: timeout) }

    func deadLetter(_ envelope: HandoffEnvelope, reason: HandoffRejection.Reason, detail: String, timeout: Duration) async throws {
        try await inner.deadLetter(envelope, reason: reason, detail: detail, timeout: timeout)
    }

    func deadLetters(_ label: HandoffLabel, timeout: Duration) async throws -> [DeadLetter] {
        try await inner.deadLetters(label, timeout: timeout)
    }
}
