import Foundation
import Handoff
import HandoffMQTT
import MosquittoClient

#if canImport(Glibc)
import Glibc
#endif

/// Scenario 5: crash failover with checkpoints (docs/PROTOCOL.md §9), in two parts, on a broker of its own (the
/// bench's settings plus `sys_interval 1`, so that the broker's byte counters can be read on `$SYS/broker/…`).
///
/// **Failover**: a predecessor in a child process (`handoff-bench role crash-predecessor`) checkpoints `labels`
/// labels (`HandoffChannel.checkpoint`, 64 at a time) on a transport whose Will has a delay of `willDelay`
/// seconds; the bench's successor watches every label (a channel each, `subscribe()`; a task per label runs
/// `complete()` on each `.available` and merges the batch). Once the successor holds every checkpoint (its
/// `sync(timeout:)`), the bench SIGKILLs the child; it times, on CLOCK_MONOTONIC, from just before `kill` to the arrival of
/// the Will at a separate observer connection, and to each label's merge. Repeated `repetitions` times, a new child
/// (a new instance) each time, on the same successor. No floor: the floor has no Will and no claim of a released
/// state; the figures are absolute, with the Will delay subtracted.
///
/// **Checkpoint cost**: one transport checkpoints `checkpointLabels` labels three times (64 at a time, as
/// `HandoffService` does): every state changed, every state unchanged (skipped: nothing is sent), then one in ten
/// changed. Per round: wall time, checkpoints/s, payload bytes written, and the broker's counters
/// (`$SYS/broker/bytes/received`, `…/publish/bytes/received`, `…/store/messages/bytes`, `…/retained messages/count`)
/// read after the round. The states are encoded by the library's default codec (`JSONStateCodec`, which sorts keys, so
/// that an unchanged state encodes to the same bytes). "Written though unchanged" (the unchanged and 10 % rounds) counts
/// the labels whose state did not change but was written again: a correctness figure, held to 0 (a target, as the
/// contention scenario's lost handoffs); a changed state that was not written fails the scenario. Floor: the bulk
/// floor's retained publishes of the same payload size, `checkpointLabels` and `checkpointLabels / 10` of them (its
/// `ack_ms`: first publish to last PUBACK).
struct CrashScenario {
    let context: BenchContext
    let labels: Int
    let repetitions: Int
    let checkpointLabels: Int
    let size: Int
    let willDelay: UInt32
    /// This scenario's broker settings, for the report.
    let brokerConfiguration: [String]
    /// Checkpoints in flight at once: `HandoffService.Configuration`'s default `checkpointConcurrency`.
    static let concurrency = 64

    /// The extra setting of this scenario's broker: `$SYS` updates (mosquitto 2.0 publishes them every other interval).
    static let brokerSettings = ["sys_interval 1"]

    func run() async throws -> ScenarioResult {
        progress(
            "crash: swift-handoff failover, \(labels) labels checkpointed in a child process, SIGKILL, \(repetitions) repetitions, Will delay \(willDelay) s"
        )
        let failover = try await withTimeout(context.timeout, "crash failover (swift-handoff)") { [self] in try await measureFailover() }
        progress("crash: swift-handoff checkpoint cost, \(checkpointLabels) labels, 3 rounds, the default codec (JSONStateCodec)")
        let rounds = try await withTimeout(context.timeout, "crash checkpoint cost (swift-handoff)") { [self] in
            try await measureCheckpoints()
        }
        let wireSize = rounds.first.map { $0.payloadBytes / max($0.written, 1) } ?? size
        progress("crash: floor, \(checkpointLabels) and \(checkpointLabels / 10) retained publishes of \(wireSize) bytes")
        let floorAll = try await context.floor.run(
            scenario: "bulk", prefix: context.prefix("crash", "floor-all"),
            ["--count", String(checkpointLabels), "--size", String(wireSize)]
        )
        let floorTenth = try await context.floor.run(
            scenario: "bulk", prefix: context.prefix("crash", "floor-tenth"),
            ["--count", String(max(checkpointLabels / 10, 1)), "--size", String(wireSize)]
        )
        return result(failover: failover, rounds: rounds, floorAll: floorAll, floorTenth: floorTenth, wireSize: wireSize)
    }

    private func result(failover: Failover, rounds: [Round], floorAll: JSON, floorTenth: JSON, wireSize: Int) -> ScenarioResult {
        let delayMs = Double(willDelay) * 1000
        let delayNs = UInt64(willDelay) * 1_000_000_000
        func minusDelay(_ samples: [UInt64]) -> Stats { Stats(nanoseconds: samples.map { $0 > delayNs ? $0 - delayNs : 0 }) }
        let killToWill = Stats(nanoseconds: failover.killToWill)
        let killToMerged = minusDelay(failover.killToMerged)
        let willToMerged = Stats(nanoseconds: failover.willToMerged)
        let killToLast = minusDelay(failover.killToLast)
        let willToLast = Stats(nanoseconds: failover.willToLast)
        let checkpointing = Stats(nanoseconds: failover.childCheckpointNs)
        let tag = "\(labels) labels × \(repetitions)"
        var rows = [
            Row(scenario: "crash", metric: "Will delay (configured)", unit: "ms", swift: delayMs, floor: nil),
            Row(
                scenario: "crash", metric: "SIGKILL → Will delivered, p50 of \(repetitions)", unit: "ms", swift: killToWill.p50, floor: nil),
            Row(
                scenario: "crash", metric: "SIGKILL → Will delivered, max of \(repetitions)", unit: "ms", swift: killToWill.max, floor: nil),
            Row(scenario: "crash", metric: "SIGKILL → merged − Will delay, p50 [\(tag)]", unit: "ms", swift: killToMerged.p50, floor: nil),
            Row(scenario: "crash", metric: "SIGKILL → merged − Will delay, p99 [\(tag)]", unit: "ms", swift: killToMerged.p99, floor: nil),
            Row(scenario: "crash", metric: "SIGKILL → merged − Will delay, max [\(tag)]", unit: "ms", swift: killToMerged.max, floor: nil),
            Row(scenario: "crash", metric: "Will delivered → merged, p50 [\(tag)]", unit: "ms", swift: willToMerged.p50, floor: nil),
            Row(scenario: "crash", metric: "Will delivered → merged, p99 [\(tag)]", unit: "ms", swift: willToMerged.p99, floor: nil),
            Row(scenario: "crash", metric: "Will delivered → merged, max [\(tag)]", unit: "ms", swift: willToMerged.max, floor: nil),
            Row(
                scenario: "crash", metric: "SIGKILL → last label merged − Will delay, p50 of \(repetitions)", unit: "ms",
                swift: killToLast.p50, floor: nil),
            Row(
                scenario: "crash", metric: "SIGKILL → last label merged − Will delay, max of \(repetitions)", unit: "ms",
                swift: killToLast.max, floor: nil),
            Row(
                scenario: "crash", metric: "Will delivered → last label merged, p50 of \(repetitions)", unit: "ms", swift: willToLast.p50,
                floor: nil),
        ]
        let floorAllMs = floorAll["ack_ms"]?.double
        let floorTenthMs = floorTenth["ack_ms"]?.double
        for round in rounds {
            let wallMs = milliseconds(round.wallNs)
            let perSecond = Double(checkpointLabels) / (wallMs / 1000)
            let tagged = " [\(round.name)]"
            switch round.name {
            case Round.allChanged:
                rows.append(Row(scenario: "crash", metric: "checkpoint round" + tagged, unit: "ms", swift: wallMs, floor: floorAllMs))
                rows.append(
                    Row(
                        scenario: "crash", metric: "checkpoints/s" + tagged, unit: "1/s", swift: perSecond,
                        floor: floorAll["acks_per_second"]?.double)
                )
            case Round.tenthChanged:
                rows.append(Row(scenario: "crash", metric: "checkpoint round" + tagged, unit: "ms", swift: wallMs, floor: floorTenthMs))
                rows.append(Row(scenario: "crash", metric: "labels checked/s" + tagged, unit: "1/s", swift: perSecond, floor: nil))
            default:
                rows.append(Row(scenario: "crash", metric: "checkpoint round" + tagged, unit: "ms", swift: wallMs, floor: nil))
                rows.append(Row(scenario: "crash", metric: "labels checked/s" + tagged, unit: "1/s", swift: perSecond, floor: nil))
            }
            if round.name != Round.allChanged {
                // A correctness figure, not a timing: `onlyIfChanged` must skip every state that did not change.
                rows.append(
                    Row(
                        scenario: "crash", metric: "written though unchanged" + tagged, unit: "labels",
                        swift: Double(round.writtenUnchanged), floor: nil, target: .atMost(0, "")
                    )
                )
            }
            rows.append(
                Row(scenario: "crash", metric: "payload bytes written" + tagged, unit: "B", swift: Double(round.payloadBytes), floor: nil))
            rows.append(
                Row(
                    scenario: "crash", metric: "broker bytes received ($SYS)" + tagged, unit: "B",
                    swift: round.broker.bytesReceived.map(Double.init), floor: nil)
            )
        }
        if let last = rounds.last {
            rows.append(
                Row(
                    scenario: "crash", metric: "broker store after the rounds ($SYS)", unit: "B",
                    swift: last.broker.storeBytes.map(Double.init), floor: nil)
            )
        }

        let swift = JSON.object([
            ("broker_config", .array(brokerConfiguration.map(JSON.string))),
            (
                "failover",
                .object([
                    ("labels", .int(labels)),
                    ("repetitions", .int(repetitions)),
                    ("size", .int(size)),
                    ("will_delay_s", .int(Int(willDelay))),
                    ("kill_to_will_ms", .array(failover.killToWill.map { .ms(milliseconds($0)) })),
                    ("kill_to_merged_minus_will_delay", .object(killToMerged.fields())),
                    ("will_to_merged", .object(willToMerged.fields())),
                    ("kill_to_last_merged_minus_will_delay_ms", .array(failover.killToLast.map { .ms(milliseconds($0) - delayMs) })),
                    ("will_to_last_merged_ms", .array(failover.willToLast.map { .ms(milliseconds($0)) })),
                    ("kill_to_last_merged_minus_will_delay", .object(killToLast.fields())),
                    ("child_checkpoint_all_ms", .array(failover.childCheckpointNs.map { .ms(milliseconds($0)) })),
                    ("child_checkpoint_all", .object(checkpointing.fields())),
                ])
            ),
            (
                "checkpoints",
                .object([
                    ("labels", .int(checkpointLabels)),
                    ("size", .int(size)),
                    ("concurrency", .int(Self.concurrency)),
                    ("payload_size", .int(wireSize)),
                    ("codec", .string("JSONStateCodec")),
                    ("rounds", .array(rounds.map(\.json))),
                ])
            ),
        ])
        let floor = JSON.object([("bulk_all", floorAll), ("bulk_tenth", floorTenth)])
        return ScenarioResult(
            name: "crash", rows: rows, swift: swift, floor: floor,
            notes: [
                "failover: no floor (the floor has no Will and no claim of a released state): absolute figures; the broker fires a "
                    + "Will on whole seconds, so SIGKILL → Will is between the delay and the delay + about 1 s",
                "checkpoints: floor = the bulk floor's retained publishes of the same payload size (ack_ms); the unchanged round sends nothing",
                "checkpoints: the rounds use the default codec (JSONStateCodec, keys sorted); 'written though unchanged' counts the "
                    + "states that did not change but were written again (target 0: onlyIfChanged must skip them all)",
                "broker byte counters are mosquitto's $SYS/broker/bytes/received and publish/bytes/received deltas over each round "
                    + "(every byte clients sent, every PUBLISH payload byte)",
            ]
        )
    }

    // MARK: - Failover

    private struct Failover: Sendable {
        var killToWill: [UInt64] = []
        var killToMerged: [UInt64] = []
        var willToMerged: [UInt64] = []
        var killToLast: [UInt64] = []
        var willToLast: [UInt64] = []
        var childCheckpointNs: [UInt64] = []
    }

    private func measureFailover() async throws -> Failover {
        let prefix = context.prefix("crash", "failover")
        let options = MQTTHandoffTransport.Options(prefix: prefix, willDelay: .seconds(Int(willDelay)))
        let configuration = MQTTConfiguration(host: context.host, port: context.port)
        let successor = try await MQTTHandoffTransport.connect(configuration: configuration, options: options)
        // The Will's arrival, seen by a connection of its own (the successor's is busy with the claims then).
        let observer = try MQTTClient(configuration: configuration)
        let statuses = observer.messages()
        try await observer.connect()
        _ = try await observer.subscribe(successor.topics.instance("+"), options: MQTTSubscribeOptions(qos: .atLeastOnce))
        let wills = Locked<[String: UInt64]>([:])
        let watcher = Task {
            for await message in statuses where String(decoding: message.payload, as: UTF8.self).contains(#""state":"dead""#) {
                let now = monotonicNow()
                wills.withLock { if $0[message.topic] == nil { $0[message.topic] = now } }
            }
        }

        let names = try (0..<labels).map { try HandoffLabel(String(format: "crash-%05d", $0)) }
        // Merge times by repetition (the state's seq).
        let merges = Locked<[Int: [UInt64]]>([:])
        let failures = Locked<[String]>([])
        let channels = names.map { HandoffChannel<BenchState>(label: $0, transport: successor, timeout: .seconds(60)) }
        let subscriptions = try await withThrowingTaskGroup(of: (Int, AsyncStream<HandoffNotice>).self) { group in
            var next = 0
            func addNext() {
                guard next < channels.count else { return }
                let (index, channel) = (next, channels[next])
                next += 1
                group.addTask { (index, try await channel.subscribe()) }
            }
            for _ in 0..<Self.concurrency { addNext() }
            var streams: [AsyncStream<HandoffNotice>?] = Array(repeating: nil, count: channels.count)
            while let subscribed = try await group.next() {
                streams[subscribed.0] = subscribed.1
                addNext()
            }
            return streams.compactMap { $0 }
        }
        let consumers = zip(channels, subscriptions).map { channel, notices in
            Task {
                for await notice in notices {
                    guard case .available = notice else { continue }
                    do {
                        let batch = try await channel.complete()
                        if let interruption = batch.interruption { throw interruption }
                        guard !batch.handoffs.isEmpty else { continue }
                        guard batch.handoffs.allSatisfy(\.isCheckpoint) else {
                            throw BenchError("'\(channel.label)' merged a handoff that is no checkpoint")
                        }
                        let state = try batch.merged(into: BenchState(seq: -1, payload: ""), using: takeNewest)
                        let now = monotonicNow()
                        merges.withLock { $0[state.seq, default: []].append(now) }
                    } catch {
                        failures.withLock { $0.append("\(channel.label): \(error)") }
                    }
                }
            }
        }

        var failover = Failover()
        let executable = URL(
            fileURLWithPath: (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0])
        do {
            for repetition in 0..<repetitions {
                let child = try ChildProcess(
                    name: "crash predecessor", executable: executable,
                    arguments: [
                        "role", "crash-predecessor", "--host", context.host, "--port", String(context.port), "--prefix", prefix,
                        "--labels", String(labels), "--size", String(size), "--will-delay", String(willDelay), "--seq", String(repetition),
                    ]
                )
                var lines = child.lines.makeAsyncIterator()
                var ready: [Substring] = []
                while let line = await lines.next() {
                    let fields = line.split(separator: " ")
                    if fields.first == "ready", fields.count == 3 {
                        ready = fields
                        break
                    }
                }
                guard ready.count == 3, let checkpointNs = UInt64(ready[2]) else {
                    child.terminate()
                    _ = await child.wait()
                    throw BenchError("crash predecessor ended before saying 'ready': \(child.errorOutput)")
                }
                let statusTopic = successor.topics.instance(String(ready[1]))
                failover.childCheckpointNs.append(checkpointNs)
                // Every checkpoint has reached the successor (held: their owner lives).
                try await successor.sync(timeout: .seconds(30))
                try await Task.sleep(for: .milliseconds(100))
                let killed = monotonicNow()
                child.kill(SIGKILL)
                _ = await child.wait()
                try await waitUntil(context.timeout, "the successor to merge \(labels) checkpoints (repetition \(repetition))") {
                    (merges.value[repetition]?.count ?? 0) >= labels || !failures.value.isEmpty
                }
                if let failure = failures.value.first { throw BenchError("crash: a successor's complete() failed: \(failure)") }
                let times = merges.value[repetition] ?? []
                guard times.count == labels else { throw BenchError("crash: repetition \(repetition) merged \(times.count) of \(labels)") }
                try await waitUntil(10, "the Will of repetition \(repetition) at the observer") { wills.value[statusTopic] != nil }
                let will = wills.value[statusTopic] ?? killed
                failover.killToWill.append(will - killed)
                failover.killToMerged += times.map { $0 - killed }
                failover.willToMerged += times.map { $0 > will ? $0 - will : 0 }
                failover.killToLast.append((times.max() ?? killed) - killed)
                failover.willToLast.append((times.max() ?? will) > will ? (times.max() ?? will) - will : 0)
                progress(
                    "crash: repetition \(repetition + 1): SIGKILL → Will \(format(milliseconds(will - killed))) ms, "
                        + "Will → last of \(labels) merged \(format(milliseconds((times.max() ?? will) - will))) ms"
                )
            }
            try await Task.sleep(for: .milliseconds(200))
            let merged = merges.value.values.reduce(0) { $0 + $1.count }
            guard merged == labels * repetitions else {
                throw BenchError("crash: \(merged) checkpoints merged for \(labels * repetitions) checkpointed (merged twice?)")
            }
        } catch {
            for consumer in consumers { consumer.cancel() }
            watcher.cancel()
            await successor.shutdown()
            await observer.shutdown()
            throw error
        }
        await successor.shutdown()
        for consumer in consumers {
            consumer.cancel()
            await consumer.value
        }
        await observer.shutdown()
        await watcher.value
        return failover
    }

    // MARK: - Checkpoint cost

    private struct Round: Sendable {
        static let allChanged = "all changed"
        static let unchanged = "unchanged"
        static let tenthChanged = "10% changed"

        var name: String
        var wallNs: UInt64
        /// Labels whose state changed in this round.
        var changed: Int
        var written: Int
        var unchanged: Int
        /// Labels whose state did not change in this round but was written again (0 unless `onlyIfChanged` regressed).
        var writtenUnchanged: Int
        var payloadBytes: Int
        var broker: BrokerDelta

        var json: JSON {
            .object([
                ("round", .string(name)),
                ("wall_ms", .ms(milliseconds(wallNs))),
                ("changed", .int(changed)),
                ("written", .int(written)),
                ("unchanged", .int(unchanged)),
                ("written_though_unchanged", .int(writtenUnchanged)),
                ("payload_bytes", .int(payloadBytes)),
                ("broker_bytes_received", broker.bytesReceived.map(JSON.int) ?? .null),
                ("broker_publish_bytes_received", broker.publishBytesReceived.map(JSON.int) ?? .null),
                ("broker_store_bytes_after", broker.storeBytes.map(JSON.int) ?? .null),
                ("broker_retained_after", broker.retained.map(JSON.int) ?? .null),
            ])
        }
    }

    /// What the broker counted over one round.
    struct BrokerDelta: Sendable {
        var bytesReceived: Int?
        var publishBytesReceived: Int?
        var storeBytes: Int?
        var retained: Int?

        init(from before: [String: Int], to after: [String: Int]) {
            func delta(_ key: String) -> Int? { after[key].flatMap { a in before[key].map { a - $0 } } }
            bytesReceived = delta("bytes/received")
            publishBytesReceived = delta("publish/bytes/received")
            storeBytes = after["store/messages/bytes"]
            retained = after["retained messages/count"]
        }
    }

    /// Three rounds on a transport of their own, with the library's default codec. Every changed state must be written
    /// (the scenario fails otherwise); an unchanged state that is written is counted (`writtenUnchanged`, held to 0).
    private func measureCheckpoints() async throws -> [Round] {
        let codec = JSONStateCodec()
        let prefix = context.prefix("crash", "checkpoints")
        // Each read of the broker's counters waits for its next $SYS update (up to 2 s).
        let monitor = try await SysMonitor.start(host: context.host, port: context.port)
        let transport = try await MQTTHandoffTransport.connect(
            configuration: MQTTConfiguration(host: context.host, port: context.port),
            options: MQTTHandoffTransport.Options(prefix: prefix, willDelay: .seconds(Int(willDelay)))
        )
        let names = try (0..<checkpointLabels).map { try HandoffLabel(String(format: "ckpt-%05d", $0)) }
        let channels = names.map { HandoffChannel<BenchState>(label: $0, transport: transport, codec: codec, timeout: .seconds(60)) }
        let payload = BenchState.payload(forEncodedSize: size)
        // The payload each checkpoint puts on the wire: its envelope with the incarnation stamped (seq 1 and 2 are as long).
        let wireSizes = try names.map { label in
            HandoffEnvelope(
                label: label, vsn: 1, origin: transport.origin, contentType: codec.contentType,
                data: try codec.encode(BenchState(seq: 1, payload: payload)), incarnation: 1
            ).encoded().count
        }
        let plans: [(name: String, state: @Sendable (Int) -> BenchState, changed: (Int) -> Bool)] = [
            (Round.allChanged, { _ in BenchState(seq: 1, payload: payload) }, { _ in true }),
            (Round.unchanged, { _ in BenchState(seq: 1, payload: payload) }, { _ in false }),
            (Round.tenthChanged, { BenchState(seq: $0 % 10 == 0 ? 2 : 1, payload: payload) }, { $0 % 10 == 0 }),
        ]
        var rounds: [Round] = []
        do {
            var before = try await monitor.snapshot(after: monotonicNow())
            for plan in plans {
                let start = monotonicNow()
                let outcomes = try await CrashRoles.checkpointEach(channels, state: plan.state)
                let wall = monotonicNow() - start
                let changed = (0..<checkpointLabels).filter(plan.changed)
                let written = outcomes.indices.filter { outcomes[$0] == .written }
                let unchanged = outcomes.filter { $0 == .unchanged }.count
                let skippedChanged = changed.filter { outcomes[$0] != .written }
                guard written.count + unchanged == checkpointLabels, skippedChanged.isEmpty else {
                    throw BenchError(
                        "crash: round '\(plan.name)': \(written.count) written, \(unchanged) unchanged of \(checkpointLabels); "
                            + "\(skippedChanged.count) of \(changed.count) changed states not written"
                    )
                }
                let after = try await monitor.snapshot(after: monotonicNow())
                let round = Round(
                    name: plan.name, wallNs: wall, changed: changed.count, written: written.count, unchanged: unchanged,
                    writtenUnchanged: written.count - changed.count, payloadBytes: written.reduce(0) { $0 + wireSizes[$1] },
                    broker: BrokerDelta(from: before, to: after)
                )
                progress(
                    "crash: round '\(plan.name)': \(format(milliseconds(wall))) ms, \(written.count) written "
                        + "(\(round.writtenUnchanged) though unchanged), \(round.payloadBytes) payload bytes, "
                        + "broker received \(round.broker.bytesReceived.map(String.init) ?? "?") bytes"
                )
                if round.writtenUnchanged > 0 {
                    progress(
                        "crash: REGRESSION: \(round.writtenUnchanged) states that did not change were written again in round "
                            + "'\(plan.name)' (onlyIfChanged should have skipped them; is the codec's output deterministic?)"
                    )
                }
                rounds.append(round)
                before = after
            }
        } catch {
            await transport.shutdown()
            await monitor.shutdown()
            throw error
        }
        await transport.shutdown()
        await monitor.shutdown()
        return rounds
    }
}

/// The broker's `$SYS/broker/…` counters, as its last update published them.
final class SysMonitor: Sendable {
    private let client: MQTTClient
    /// By topic under `$SYS/broker/`: the last integer value.
    private let values: Locked<[String: Int]>
    /// When the last `$SYS/broker/uptime` arrived (the first topic of each update).
    private let lastUpdate: Locked<UInt64>
    private let task: Task<Void, Never>

    private init(client: MQTTClient, values: Locked<[String: Int]>, lastUpdate: Locked<UInt64>, task: Task<Void, Never>) {
        self.client = client
        self.values = values
        self.lastUpdate = lastUpdate
        self.task = task
    }

    static func start(host: String, port: Int) async throws -> SysMonitor {
        let client = try MQTTClient(configuration: MQTTConfiguration(host: host, port: port))
        let messages = client.messages()
        let values = Locked<[String: Int]>([:])
        let lastUpdate = Locked<UInt64>(0)
        let task = Task {
            for await message in messages {
                let key = String(message.topic.dropFirst("$SYS/broker/".count))
                let text = String(decoding: message.payload, as: UTF8.self)
                if key == "uptime" {
                    let now = monotonicNow()
                    lastUpdate.withLock { $0 = now }
                } else if let value = Int(text) {
                    values.withLock { $0[key] = value }
                }
            }
        }
        try await client.connect()
        _ = try await client.subscribe("$SYS/broker/#")
        return SysMonitor(client: client, values: values, lastUpdate: lastUpdate, task: task)
    }

    /// The counters as of the broker's first update that starts after `time` (mosquitto 2.0 publishes one every
    /// other `sys_interval`; a counter that did not change is not published again, its last value holds).
    func snapshot(after time: UInt64) async throws -> [String: Int] {
        try await waitUntil(10, "a $SYS update of the broker") { lastUpdate.value > time }
        // The rest of the update follows its first topic at once.
        try await Task.sleep(for: .milliseconds(150))
        return values.value
    }

    func shutdown() async {
        await client.shutdown()
        await task.value
    }
}

/// The predecessor of the crash scenario, in a process of its own: checkpoints every label, says
/// `ready <instance> <ns it took>`, then waits to be SIGKILLed (if its stdin closes first, the bench went away: it
/// shuts down).
enum CrashRoles {
    static func predecessor(host: String, port: Int, prefix: String, labels: Int, size: Int, willDelay: UInt32, seq: Int) async throws {
        let transport = try await MQTTHandoffTransport.connect(
            configuration: MQTTConfiguration(host: host, port: port),
            options: MQTTHandoffTransport.Options(prefix: prefix, willDelay: .seconds(Int(willDelay)))
        )
        let channels = try (0..<labels).map {
            HandoffChannel<BenchState>(
                label: try HandoffLabel(String(format: "crash-%05d", $0)), transport: transport, timeout: .seconds(60))
        }
        let payload = BenchState.payload(forEncodedSize: size)
        let start = monotonicNow()
        let counts = try await checkpointAll(channels) { _ in BenchState(seq: seq, payload: payload) }
        let elapsed = monotonicNow() - start
        guard counts[.written, default: 0] == labels else { throw BenchError("crash predecessor: \(counts) of \(labels) labels") }
        FileHandle.standardOutput.write(Data("ready \(transport.origin.instance) \(elapsed)\n".utf8))
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            Thread {
                while readLine() != nil {}
                continuation.resume()
            }.start()
        }
        await transport.shutdown()
    }

    /// Checkpoints `state(i)` for every channel `i`, `CrashScenario.concurrency` at a time; counts the outcomes.
    static func checkpointAll(
        _ channels: [HandoffChannel<BenchState>], state: @escaping @Sendable (Int) -> BenchState
    ) async throws -> [HandoffCheckpointOutcome: Int] {
        try await checkpointEach(channels, state: state).reduce(into: [:]) { $0[$1, default: 0] += 1 }
    }

    /// Checkpoints `state(i)` for every channel `i`, `CrashScenario.concurrency` at a time; each channel's outcome.
    static func checkpointEach(
        _ channels: [HandoffChannel<BenchState>], state: @escaping @Sendable (Int) -> BenchState
    ) async throws -> [HandoffCheckpointOutcome] {
        try await withThrowingTaskGroup(of: (Int, HandoffCheckpointOutcome).self) { group in
            var next = 0
            func addNext() {
                guard next < channels.count else { return }
                let (index, channel) = (next, channels[next])
                next += 1
                group.addTask { (index, try await channel.checkpoint(state(index))) }
            }
            for _ in 0..<CrashScenario.concurrency { addNext() }
            var outcomes: [HandoffCheckpointOutcome?] = Array(repeating: nil, count: channels.count)
            while let checkpointed = try await group.next() {
                outcomes[checkpointed.0] = checkpointed.1
                addNext()
            }
            return outcomes.map { $0! }
        }
    }
}
