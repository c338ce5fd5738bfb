import Foundation
import Handoff
import HandoffMQTT

/// Scenario 3: one large state, end to end, and the peak resident memory of each side.
///
/// The state is over the default chunk size (``MQTTHandoffTransport/Options/chunkSize``, 256 KiB), so it travels as a
/// chunked handoff (docs/PROTOCOL.md §12): 64 retained chunks of 256 KiB, acknowledged before the manifest, which the
/// successor claims; it then reads and checks the chunks, merges, and removes them (after the round's end stamp). The
/// floor still sends the state as one message.
///
/// swift-handoff: the predecessor and the successor are separate processes (this executable re-invoked as
/// `handoff-bench role large-predecessor|large-successor`), so each reports its own idle baseline (VmHWM once
/// connected, before the state exists) and its peak (VmHWM at the end). Rounds run one after another: the
/// predecessor initiates the state, the successor merges it into an empty state and drops it. A round is timed
/// from just before `initiate` (predecessor) to just after the merge (successor), on CLOCK_MONOTONIC.
/// The floor: both clients in one process, the same payload size, its own baseline and peak.
struct LargeScenario {
    let context: BenchContext
    let size: Int
    let rounds: Int

    let codecs: [BenchCodec]

    func run() async throws -> ScenarioResult {
        progress("large: floor, \(rounds) rounds of \(size) bytes")
        let floor = try await context.floor.run(
            scenario: "large", prefix: context.prefix("large", "floor"), ["--count", String(rounds), "--size", String(size)]
        )
        let stateMB = Double(size) / 1e6
        let floorMB = (floor["peak_rss_kb"]?.double).flatMap { peak in
            (floor["baseline_rss_kb"]?.double).map { (peak - $0) * 1024 / 1e6 }
        }
        var rows: [Row] = []
        var figures: [(String, JSON)] = []
        for codec in codecs {
            progress(
                "large: swift-handoff (\(codec.rawValue) codec), \(rounds) rounds of \(size) bytes, predecessor and successor in processes of their own"
            )
            let measured = try await measure(codec)
            let codecMs = try Self.codecRoundTrip(codec, size: size, rounds: rounds)
            let stats = Stats(nanoseconds: measured.rounds)
            let megabytesPerSecond = Double(size) / 1e6 / (stats.p50 / 1000)
            func aboveBaselineMB(_ memory: (baseline: Int, peak: Int)) -> Double { Double(memory.peak - memory.baseline) * 1024 / 1e6 }
            let predecessorMB = aboveBaselineMB(measured.predecessor)
            let successorMB = aboveBaselineMB(measured.successor)
            figures.append(
                (
                    codec.rawValue,
                    .object([
                        ("codec", .string(codec.rawValue)),
                        ("size", .int(size)),
                        ("chunk_size", .int(MQTTHandoffTransport.Options().chunkSize)),
                        ("rounds_ms", .array(measured.rounds.map { .ms(milliseconds($0)) })),
                        ("end_to_end_ms", .ms(stats.p50)),
                        ("mb_per_second", .number(megabytesPerSecond)),
                        ("codec_encode_decode_ms", .ms(codecMs)),
                        ("predecessor_baseline_kb", .int(measured.predecessor.baseline)),
                        ("predecessor_peak_kb", .int(measured.predecessor.peak)),
                        ("predecessor_above_baseline_per_state", .number(predecessorMB / stateMB)),
                        ("successor_baseline_kb", .int(measured.successor.baseline)),
                        ("successor_peak_kb", .int(measured.successor.peak)),
                        ("successor_above_baseline_per_state", .number(successorMB / stateMB)),
                    ])
                ))
            let tag = " [\(codec.rawValue)]"
            rows += [
                Row(scenario: "large", metric: "end to end" + tag, unit: "ms", swift: stats.p50, floor: floor["end_to_end_ms"]?.double),
                Row(scenario: "large", metric: "of which the codec alone, encode + decode" + tag, unit: "ms", swift: codecMs, floor: nil),
                Row(
                    scenario: "large", metric: "throughput" + tag, unit: "MB/s", swift: megabytesPerSecond,
                    floor: floor["mb_per_second"]?.double,
                    target: .ratioAtLeast(0.6)
                ),
                Row(
                    scenario: "large", metric: "predecessor peak RSS above idle" + tag, unit: "MB", swift: predecessorMB, floor: nil,
                    target: .atMost(2.5 * stateMB, "2.5 × state")
                ),
                Row(
                    scenario: "large", metric: "successor peak RSS above idle" + tag, unit: "MB", swift: successorMB, floor: nil,
                    target: .atMost(2.5 * stateMB, "2.5 × state")
                ),
            ]
        }
        rows.append(Row(scenario: "large", metric: "floor (both clients) peak RSS above idle", unit: "MB", swift: nil, floor: floorMB))
        return ScenarioResult(
            name: "large", rows: rows, swift: .object(figures), floor: floor,
            notes: [
                "json: the state through swift-handoff's default codec (Foundation's JSONEncoder/JSONDecoder); "
                    + "raw: the same bytes through a codec that copies them, to show the library's own cost",
                "swift-handoff sends the state in chunks of the default chunk size (\(MQTTHandoffTransport.Options().chunkSize) bytes) "
                    + "plus a manifest (docs/PROTOCOL.md §12); the floor sends it as one message",
            ]
        )
    }

    /// The state's encode and decode by `codec` alone, in this process, median of `rounds`: the codec's share of a
    /// round, which no transport can save.
    private static func codecRoundTrip(_ codec: BenchCodec, size: Int, rounds: Int) throws -> Double {
        let state = BenchState(seq: 1, payload: BenchState.payload(forEncodedSize: size))
        var samples: [UInt64] = []
        for _ in 0..<max(rounds, 1) {
            let start = monotonicNow()
            let data = try codec.codec.encode(state)
            _ = try codec.codec.decode(BenchState.self, from: data)
            samples.append(monotonicNow() - start)
        }
        return Stats(nanoseconds: samples).p50
    }

    private struct Measured {
        var rounds: [UInt64] = []
        var predecessor: (baseline: Int, peak: Int) = (0, 0)
        var successor: (baseline: Int, peak: Int) = (0, 0)
    }

    private func measure(_ codec: BenchCodec) async throws -> Measured {
        let executable = URL(
            fileURLWithPath: (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0])
        let common = [
            "--host", context.host, "--port", String(context.port), "--prefix", context.prefix("large", "swift-\(codec.rawValue)"),
            "--size", String(size), "--rounds", String(rounds), "--codec", codec.rawValue,
        ]
        let successor = try ChildProcess(name: "large successor", executable: executable, arguments: ["role", "large-successor"] + common)
        let predecessor = Locked<ChildProcess?>(nil)
        do {
            let measured = try await withTimeout(context.timeout, "large (swift-handoff)") { [rounds] in
                var measured = Measured()
                var fromSuccessor = successor.lines.makeAsyncIterator()
                measured.successor.baseline = try await Self.expect("ready", from: &fromSuccessor, successor)[0]
                let child = try ChildProcess(
                    name: "large predecessor", executable: executable, arguments: ["role", "large-predecessor"] + common)
                predecessor.withLock { $0 = child }
                var fromPredecessor = child.lines.makeAsyncIterator()
                measured.predecessor.baseline = try await Self.expect("ready", from: &fromPredecessor, child)[0]
                for round in 0..<rounds {
                    child.send("go")
                    let initiated = try await Self.expect("round", from: &fromPredecessor, child)
                    let merged = try await Self.expect("merged", from: &fromSuccessor, successor)
                    guard initiated[0] == round, merged[0] == round else {
                        throw BenchError("large: round \(round): predecessor sent \(initiated[0]), successor merged \(merged[0])")
                    }
                    measured.rounds.append(UInt64(merged[1] - initiated[1]))
                }
                child.send("exit")
                measured.predecessor.peak = try await Self.expect("peak", from: &fromPredecessor, child)[0]
                measured.successor.peak = try await Self.expect("peak", from: &fromSuccessor, successor)[0]
                return measured
            }
            for child in [successor, predecessor.value].compactMap({ $0 }) {
                let status = await child.wait()
                guard status == 0 else { throw BenchError("\(child.name) exited with status \(status): \(child.errorOutput)") }
            }
            return measured
        } catch {
            successor.terminate()
            predecessor.value?.terminate()
            throw error
        }
    }

    /// Reads lines from a role process until one starting with `word`; returns its integer fields.
    private static func expect(_ word: String, from lines: inout AsyncStream<String>.Iterator, _ child: ChildProcess) async throws -> [Int]
    {
        while let line = await lines.next() {
            let fields = line.split(separator: " ")
            guard fields.first.map(String.init) == word else { continue }
            return fields.dropFirst().compactMap { Int($0) }
        }
        throw BenchError("\(child.name) ended before saying '\(word)': \(child.errorOutput)")
    }
}

/// The role processes of the large scenario. Each prints `ready <VmHWM kB> <VmRSS kB>` once connected (and,
/// for the successor, subscribed), then its per-round lines, then `peak <VmHWM kB> <VmRSS kB>`.
enum LargeRoles {
    static func predecessor(host: String, port: Int, prefix: String, size: Int, rounds: Int, codec: BenchCodec) async throws {
        let transport = try await BenchContext.transport(host: host, port: port, prefix: prefix)
        let channel = HandoffChannel<BenchState>(
            label: try HandoffLabel("large"), transport: transport, codec: codec.codec, timeout: .seconds(120)
        )
        say("ready", residentMemory())
        let payload = BenchState.payload(forEncodedSize: size)
        var commands = standardInputLines().makeAsyncIterator()
        for round in 0..<rounds {
            guard await commands.next() == "go" else { throw BenchError("large predecessor: expected 'go'") }
            let start = monotonicNow()
            try await channel.initiate(BenchState(seq: round, payload: payload))
            say("round \(round) \(start) \(monotonicNow())")
        }
        _ = await commands.next()
        say("peak", residentMemory())
        await transport.shutdown()
    }

    static func successor(host: String, port: Int, prefix: String, size: Int, rounds: Int, codec: BenchCodec) async throws {
        let transport = try await BenchContext.transport(host: host, port: port, prefix: prefix)
        let channel = HandoffChannel<BenchState>(
            label: try HandoffLabel("large"), transport: transport, codec: codec.codec, timeout: .seconds(120)
        )
        let notices = try await channel.subscribe()
        say("ready", residentMemory())
        var merged = 0
        for await notice in notices {
            guard case .available = notice else { continue }
            let batch = try await channel.complete()
            if let interruption = batch.interruption { throw interruption }
            guard !batch.handoffs.isEmpty else { continue }
            // A fresh successor has no state of its own: merge into an empty one, check it, drop it.
            let state = try batch.merged(into: BenchState(seq: -1, payload: ""), using: takeNewest)
            let now = monotonicNow()
            guard state.payload.utf8.count == BenchState.payloadCount(forEncodedSize: size) else {
                throw BenchError("large successor: the merged state has \(state.payload.utf8.count) payload bytes")
            }
            say("merged \(state.seq) \(now)")
            // The chunks go once the state is merged (docs/PROTOCOL.md §12), after the round's end stamp.
            await channel.merged(batch.handoffs)
            merged += batch.handoffs.count
            if merged >= rounds { break }
        }
        say("peak", residentMemory())
        await transport.shutdown()
    }

    /// The lines of stdin, read on a thread of its own.
    private static func standardInputLines() -> AsyncStream<String> {
        let (lines, continuation) = AsyncStream.makeStream(of: String.self)
        Thread {
            while let line = readLine() { continuation.yield(line) }
            continuation.finish()
        }.start()
        return lines
    }

    private static func say(_ word: String, _ memory: (peakKB: Int, currentKB: Int)) {
        say("\(word) \(memory.peakKB) \(memory.currentKB)")
    }

    private static func say(_ line: String) {
        FileHandle.standardOutput.write(Data((line + "\n").utf8))
    }
}
