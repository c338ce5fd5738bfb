import Foundation
import Handoff
import HandoffTestSupport
import MosquittoClient
import MosquittoTestKit
import Testing

@testable import HandoffMQTT

/// Checkpoints and crash release (docs/PROTOCOL.md §9) between swift-handoff and the independent Python client
/// (interop/python/handoff_client.py: `checkpoint` writes checkpoints and dies without DISCONNECT, `race
/// --checkpoints` claims released ones). A Swift "crash" is a predecessor behind a TCPProxy that cuts its
/// connection and refuses it back; a Python crash is a process that exits without DISCONNECT. Will delay: 1 s.
@Suite("Checkpoints and crash release with the Python client of docs/PROTOCOL.md", .serialized, .timeLimit(.minutes(3)))
struct PythonCheckpointTests {
    @Test("a Python predecessor checkpoints and dies: a running Swift successor merges its last checkpoint, exactly")
    func pythonCrashToSwift() async throws {
        try await withPythonClient { broker, python in
            let label = try HandoffLabel("meter/é 50%")
            let successor = try await python.connectCheckpointing()
            let channel = HandoffChannel<InteropNote>(label: label, transport: successor)
            _ = try await channel.subscribe()

            let ready = python.file("written.json")
            let crash = python.file("crash")
            let writer = try python.start(
                "checkpoint",
                [
                    "--label", label.rawValue, "--data", InteropNote.pythonTemplate, "--count", "3",
                    "--ready-file", ready.path, "--end-file", crash.path,
                ],
                output: python.file("checkpoint.json"))
            defer { writer.terminate() }
            try await writer.waitForFile(ready, within: .seconds(20))
            let written = try JSONDecoder().decode(PythonCheckpoints<InteropNote>.self, from: Data(contentsOf: ready))
            #expect(written.checkpoints.count == 3)
            #expect(written.births.map(\.state) == ["online"] && written.births.first?.incarnation == 1, "\(written.births)")
            #expect(written.checkpoints.allSatisfy { $0.incarnation == 1 })
            #expect(Set(written.checkpoints.map(\.id)).count == 3, "a checkpoint id was reused")
            let last = try #require(written.checkpoints.last)
            #expect(last.topic == "\(python.prefix)/checkpoints/\(label.topicLevel)/\(written.instance)")

            // While the Python writer lives, its checkpoint is held: nobody is offered it.
            try await successor.sync(timeout: .seconds(10))
            #expect(try await channel.complete().handoffs.isEmpty)

            let clock = ContinuousClock()
            let crashed = clock.now
            try Data().write(to: crash)
            let output: PythonCheckpoints<InteropNote> = try await writer.result(within: .seconds(20))
            #expect(output.fenced == nil)
            var merged: [ClaimedHandoff<InteropNote>] = []
            let deadline = clock.now + .seconds(15)
            while merged.isEmpty, clock.now < deadline {
                let batch = try await channel.complete()
                #expect(batch.rejected.isEmpty && batch.deferred.isEmpty, "\(batch.rejected + batch.deferred)")
                merged += batch.handoffs
                if merged.isEmpty { try await Task.sleep(for: .milliseconds(20)) }
            }
            let released = crashed.duration(to: clock.now)
            let handoff = try #require(merged.first, "the Swift successor merged nothing")
            #expect(merged.count == 1)
            #expect(handoff.isCheckpoint)
            #expect(handoff.state == last.data)
            #expect(handoff.id.rawValue == last.id)
            #expect(handoff.origin.instance == written.instance)
            #expect(handoff.label == label)
            #expect(released < .seconds(5), "released after \(released) with a Will delay of 1 s")

            // The checkpoint was claimed once: a later successor finds nothing.
            let late = try await python.connectCheckpointing()
            let lateChannel = HandoffChannel<InteropNote>(label: label, transport: late)
            _ = try await lateChannel.subscribe()
            try await late.sync(timeout: .seconds(10))
            #expect(try await lateChannel.complete().handoffs.isEmpty)
            await late.shutdown()
            await successor.shutdown()
        }
    }

    @Test("a Python predecessor shuts down gracefully (§9.6): the Swift successor merges its handoff, not its checkpoint")
    func pythonGracefulHandoff() async throws {
        try await withPythonClient { broker, python in
            let label = try HandoffLabel("graceful")
            let successor = try await python.connectCheckpointing()
            let channel = HandoffChannel<InteropNote>(label: label, transport: successor)
            _ = try await channel.subscribe()
            let output: PythonCheckpoints<InteropNote> = try await python.json(
                "checkpoint", ["--label", label.rawValue, "--data", InteropNote.pythonTemplate, "--count", "2", "--end", "handoff"])
            let handoffID = try #require(output.handoff?.id, "the Python writer did not hand off")
            try await Task.sleep(for: .seconds(2))  // a Will (delay 1 s) would have been published by now
            try await successor.sync(timeout: .seconds(10))
            var merged: [ClaimedHandoff<InteropNote>] = []
            _ = await eventually(upTo: .seconds(10)) {
                merged += (try? await channel.complete().handoffs) ?? []
                return !merged.isEmpty
            }
            try await successor.sync(timeout: .seconds(10))
            merged += try await channel.complete().handoffs
            #expect(merged.map(\.id.rawValue) == [handoffID])
            #expect(merged.first?.isCheckpoint == false)
            #expect(merged.first?.state == output.checkpoints.last?.data)
            // Nothing of the writer is left: no checkpoint, no status.
            let retained: [PythonDumpEntry] = try await python.json("dump", [])
            #expect(retained.map(\.topic).filter { $0.contains(output.instance) }.isEmpty, "\(retained.map(\.topic))")
            await successor.shutdown()
        }
    }

    @Test(
        "a Swift predecessor checkpoints and crashes: a running Python successor merges it and fences it; a Python successor started after another crash merges that one"
    )
    func swiftCrashToPython() async throws {
        try await withPythonClient { broker, python in
            let label = try HandoffLabel("a/b+#")
            let proxy = try await TCPProxy.start(forwardingTo: broker.plainPort)
            defer { proxy.stop() }
            let predecessor = try await python.connectCheckpointing(port: proxy.port)
            let owner = HandoffChannel<InteropNote>(label: label, transport: predecessor)
            #expect(try await owner.checkpoint(.swift(1)) == .written)
            #expect(try await owner.checkpoint(.swift(2)) == .written)

            let ready = python.file("ready")
            let racer = try python.start(
                "race", ["--label", label.rawValue, "--checkpoints", "--expect", "1", "--deadline", "30", "--ready-file", ready.path],
                output: python.file("live.json"))
            defer { racer.terminate() }
            try await racer.waitForFile(ready, within: .seconds(20))
            await proxy.refuseNewConnections()
            await proxy.cutAllConnections()
            let output: PythonRace<InteropNote> = try await racer.result(within: .seconds(30))
            let instance = predecessor.origin.instance
            #expect(output.complete && output.handoffs.count == 1, "\(output.handoffs)")
            let entry = try #require(output.handoffs.values.first)
            #expect(entry.checkpoint == true && entry.merged && entry.winner == output.instance && entry.purpose == "merge", "\(entry)")
            #expect(entry.data == .swift(2))
            #expect(entry.origin == instance)
            #expect(entry.incarnation == 1)
            #expect(entry.topic == "\(python.prefix)/checkpoints/\(label.topicLevel)/\(instance)")
            #expect(
                entry.raw.flatMap { Data(base64Encoded: $0) }.map { try? JSONDecoder().decode(InteropNote.self, from: $0) } == .swift(2))
            #expect((output.releasedThrough?[instance] ?? 0) >= 1, "\(output.releasedThrough ?? [:])")
            #expect(output.heldVerdicts?.isEmpty ?? true)

            // Back on the network, the Swift predecessor learns that it lost the label (the Python claim, its Will).
            await proxy.acceptNewConnections()
            let fenced = await eventually(upTo: .seconds(15)) { predecessor.isFenced(label) }
            #expect(fenced, "the Swift predecessor was not fenced")
            #expect(try await owner.checkpoint(.swift(3)) == .fenced)

            // A second Swift predecessor crashes before any successor runs: a Python successor started later reads
            // the retained statuses before the retained checkpoints (A3) and merges it.
            let proxy2 = try await TCPProxy.start(forwardingTo: broker.plainPort)
            defer { proxy2.stop() }
            let second = try await python.connectCheckpointing(port: proxy2.port)
            #expect(try await HandoffChannel<InteropNote>(label: label, transport: second).checkpoint(.swift(7)) == .written)
            await proxy2.refuseNewConnections()
            await proxy2.cutAllConnections()
            try await Task.sleep(for: .milliseconds(2500))  // the Will (delay 1 s) has been published
            let late: PythonRace<InteropNote> = try await python.json(
                "race", ["--label", label.rawValue, "--checkpoints", "--expect", "1", "--deadline", "20"])
            let lateEntry = try #require(late.handoffs.values.first)
            #expect(late.handoffs.count == 1 && lateEntry.merged && lateEntry.data == .swift(7), "\(late.handoffs)")
            #expect(lateEntry.origin == second.origin.instance)
            await second.shutdown()
            await predecessor.shutdown()
        }
    }

    @Test(
        "unreadable checkpoints from Python: ignored while their writers live; once released, Swift dead-letters each with the Python reader's reason, verbatim"
    )
    func garbageCheckpoints() async throws {
        try await withPythonClient { broker, python in
            let label = try HandoffLabel("garbage/cp")
            let live = try await python.connectCheckpointing()
            let liveChannel = HandoffChannel<AnyJSONState>(label: label, transport: live)
            _ = try await liveChannel.subscribe()
            let release = python.file("release")
            let output = python.file("garbage-checkpoints.json")
            let publisher = try python.start(
                "garbage-checkpoints", ["--label", label.rawValue, "--release-file", release.path], output: output)
            defer { publisher.terminate() }
            try await publisher.waitForFile(output, within: .seconds(20))
            let cases = try JSONDecoder().decode([GarbageCheckpoint].self, from: Data(contentsOf: output))
            #expect(cases.count >= 5 && cases.allSatisfy { $0.expect != "ok" }, "\(cases)")

            // Their writers released nothing: ignored (they would write again).
            try await live.sync(timeout: .seconds(10))
            #expect(try await liveChannel.complete().handoffs.isEmpty)
            #expect(try await live.deadLetters(label, timeout: .seconds(10)).isEmpty)

            // Released: a successor that receives them now dead-letters them, under {label}/{instance}.
            try Data().write(to: release)
            try await publisher.finish(within: .seconds(20))
            let successor = try await python.connectCheckpointing()
            let channel = HandoffChannel<AnyJSONState>(label: label, transport: successor)
            _ = try await channel.subscribe()
            var letters: [String: DeadLetter] = [:]
            _ = await eventually(upTo: .seconds(15)) {
                #expect((try? await channel.complete().handoffs.isEmpty) ?? true)
                for letter in (try? await successor.deadLetters(label, timeout: .seconds(10))) ?? [] { letters[letter.id] = letter }
                return letters.count >= cases.count
            }
            for garbage in cases {
                let letter = try #require(letters[garbage.instance], "Swift did not dead-letter \(garbage.kind)")
                #expect(letter.reason.rawValue == garbage.expect, "\(garbage.kind): Swift \(letter.reason), Python \(garbage.expect)")
                #expect(letter.payload.base64EncodedString() == garbage.payload, "\(garbage.kind): not verbatim")
            }
            await successor.shutdown()
            await live.shutdown()
        }
    }

    static let predecessorsPerLanguage = 3
    static let successorsPerLanguage = 3

    @Test(
        "3 Python and 3 Swift successors watch one label; 3 Swift and 3 Python predecessors checkpoint and crash: each checkpoint merged exactly once, none lost, all agree"
    )
    func crashRace() async throws {
        try await withPythonClient { broker, python in
            let label = try HandoffLabel("crash-race/é")
            let total = 2 * Self.predecessorsPerLanguage

            // Successors: Python racers (claims undelayed, or delayed by a random 0-40 or 0-80 ms) and Swift channels.
            var racers: [PythonProcess] = []
            defer { for racer in racers { racer.terminate() } }
            for index in 0..<Self.successorsPerLanguage {
                racers.append(
                    try python.start(
                        "race",
                        [
                            "--label", label.rawValue, "--checkpoints", "--expect", "\(total)", "--deadline", "60",
                            "--claim-jitter", "\(40 * index)", "--ready-file", python.file("racer-ready-\(index)").path,
                        ],
                        output: python.file("racer-\(index).json")))
            }
            let merges = Locked<[String: [SwiftCheckpointMerge]]>([:])  // checkpoint id -> Swift merges
            var successors: [MQTTHandoffTransport] = []
            var workers: [Task<Void, any Error>] = []
            defer { for worker in workers { worker.cancel() } }
            for _ in 0..<Self.successorsPerLanguage {
                let transport = try await python.connectCheckpointing()
                let channel = HandoffChannel<RaceItem>(label: label, transport: transport, timeout: .seconds(20))
                let notices = try await channel.subscribe()
                successors.append(transport)
                workers.append(
                    Task {
                        for await notice in notices {
                            guard case .available = notice else { continue }
                            let batch = try await channel.complete()
                            merges.withLock { merges in
                                for handoff in batch.handoffs {
                                    merges[handoff.id.rawValue, default: []].append(
                                        SwiftCheckpointMerge(
                                            instance: transport.origin.instance, item: handoff.state, origin: handoff.origin.instance,
                                            isCheckpoint: handoff.isCheckpoint))
                                }
                            }
                        }
                    })
            }
            for index in racers.indices {
                try await racers[index].waitForFile(python.file("racer-ready-\(index)"), within: .seconds(30))
            }

            // Predecessors: each writes 3 checkpoints; the last one is what must be merged.
            var expected: [RaceItem: String] = [:]  // last checkpoint -> its writer's instance
            let proxy = try await TCPProxy.start(forwardingTo: broker.plainPort)
            defer { proxy.stop() }
            var swiftPredecessors: [MQTTHandoffTransport] = []
            for index in 0..<Self.predecessorsPerLanguage {
                let predecessor = try await python.connectCheckpointing(port: proxy.port)
                let owner = HandoffChannel<RaceItem>(label: label, transport: predecessor)
                for step in 0..<3 {
                    #expect(try await owner.checkpoint(RaceItem(source: "swift", n: index * 10 + step)) == .written)
                }
                expected[RaceItem(source: "swift", n: index * 10 + 2)] = predecessor.origin.instance
                swiftPredecessors.append(predecessor)
            }
            let crash = python.file("crash")
            var writers: [PythonProcess] = []
            defer { for writer in writers { writer.terminate() } }
            for index in 0..<Self.predecessorsPerLanguage {
                writers.append(
                    try python.start(
                        "checkpoint",
                        [
                            "--label", label.rawValue, "--data", #"{"source":"python","n":{i}}"#, "--start", "\(index * 10)", "--count",
                            "3",
                            "--ready-file", python.file("writer-ready-\(index)").path, "--end-file", crash.path,
                        ],
                        output: python.file("writer-\(index).json")))
            }
            for index in writers.indices {
                try await writers[index].waitForFile(python.file("writer-ready-\(index)"), within: .seconds(30))
            }

            // All six crash at once.
            try Data().write(to: crash)
            await proxy.refuseNewConnections()
            await proxy.cutAllConnections()
            for writer in writers {
                let output: PythonCheckpoints<RaceItem> = try await writer.result(within: .seconds(20))
                let last = try #require(output.checkpoints.last)
                #expect(output.checkpoints.count == 3 && last.incarnation == 1)
                expected[last.data] = output.instance
            }
            #expect(expected.count == total)

            var outcomes: [PythonRace<RaceItem>] = []
            for racer in racers { outcomes.append(try await racer.result(within: .seconds(60))) }
            let pythonMerged = Set(outcomes.flatMap { $0.handoffs.filter(\.value.merged).keys })
            _ = await eventually(upTo: .seconds(20)) {
                merges.withLock { $0.count } + pythonMerged.count >= total
            }
            try await Task.sleep(for: .milliseconds(500))  // a late duplicate merge would show up here

            // Who merged what: checkpoint id -> (merger, state).
            var mergers: [String: [(instance: String, item: RaceItem?)]] = [:]
            for (id, list) in merges.withLock({ $0 }) {
                for merge in list {
                    #expect(merge.isCheckpoint, "Swift merged \(id) as a handoff")
                    #expect(expected[merge.item] == merge.origin, "Swift merged \(merge.item) with origin \(merge.origin)")
                    mergers[id, default: []].append((merge.instance, merge.item))
                }
            }
            for outcome in outcomes {
                #expect(outcome.complete, "Python racer \(outcome.instance) saw \(outcome.handoffs.count) verdicts of \(total)")
                #expect(
                    outcome.heldVerdicts?.isEmpty ?? true,
                    "Python \(outcome.instance) saw claims on checkpoints it held: \(outcome.heldVerdicts ?? [])")
                for (id, entry) in outcome.handoffs where entry.merged {
                    mergers[id, default: []].append((outcome.instance, entry.data))
                }
            }
            let mergedItems = mergers.values.flatMap { $0.compactMap(\.item) }
            #expect(
                Set(mergedItems) == Set(expected.keys),
                "lost: \(Set(expected.keys).subtracting(mergedItems)); unknown: \(Set(mergedItems).subtracting(expected.keys))")
            #expect(mergedItems.count == total, "\(mergedItems.count) merges of \(total) checkpoints")
            let duplicates = mergers.filter { $0.value.count != 1 }
            #expect(duplicates.isEmpty, "merged more than once: \(duplicates.map { "\($0.key): \($0.value.map(\.instance))" })")

            // Every Python racer saw the same verdict on every checkpoint, naming the one that merged it.
            let winners = mergers.compactMapValues { $0.first?.instance }
            for outcome in outcomes {
                #expect(Set(outcome.handoffs.keys) == Set(winners.keys), "Python \(outcome.instance) saw other checkpoints")
                for (id, entry) in outcome.handoffs {
                    #expect(
                        entry.checkpoint == true && entry.winner == winners[id], "Python \(outcome.instance) disagrees on \(id): \(entry)")
                    #expect(entry.merged == (entry.winner == outcome.instance), "Python \(outcome.instance) on \(id): \(entry)")
                    let item = entry.raw.flatMap { Data(base64Encoded: $0) }.flatMap { try? JSONDecoder().decode(RaceItem.self, from: $0) }
                    #expect(item.flatMap { expected[$0] } == entry.origin, "Python \(outcome.instance): origin of \(id)")
                }
            }
            let swiftInstances = Set(successors.map(\.origin.instance))
            let swiftWins = winners.values.filter { swiftInstances.contains($0) }.count
            print("crash race of \(total) checkpoints: Swift won \(swiftWins), Python \(total - swiftWins)")

            for worker in workers { worker.cancel() }
            for successor in successors { await successor.shutdown() }
            await withTaskGroup(of: Void.self) { group in
                for predecessor in swiftPredecessors { group.addTask { await predecessor.shutdown() } }
            }
        }
    }
}

struct GarbageCheckpoint: Decodable, Sendable {
    var kind: String
    var instance: String
    var payload: String  // base64
    var expect: String  // the Python reader's §7 reason code
}

/// Any JSON state (the garbage checkpoints must never be merged).
struct AnyJSONState: Codable, Sendable {
    init(from decoder: any Decoder) throws {}
    func encode(to encoder: any Encoder) throws {}
}

struct SwiftCheckpointMerge: Sendable {
    var instance: String
    var item: RaceItem
    var origin: String
    var isCheckpoint: Bool
}

extension PythonClient {
    /// A Swift participant that keeps checkpoints on the same broker and prefix, with a Will delay of 1 s; `port`
    /// is a TCPProxy's to make it crashable.
    func connectCheckpointing(port: Int? = nil) async throws -> MQTTHandoffTransport {
        try await MQTTHandoffTransport.connect(
            configuration: MQTTConfiguration(host: host, port: port ?? self.port),
            options: .init(prefix: prefix, willDelay: .seconds(1)))
    }
}

// MARK: - What the Python client writes

/// The output of `handoff_client.py checkpoint` (and its ready file).
struct PythonCheckpoints<State: Decodable & Sendable>: Decodable, Sendable {
    struct Checkpoint: Decodable, Sendable {
        var id: String
        var label: String
        var topic: String
        var incarnation: Int
        var sha256: String
        var data: State
    }
    struct Status: Decodable, Sendable {
        var format: String
        var incarnation: Int
        var instance: String
        var released: Int
        var state: String
    }
    struct Handoff: Decodable, Sendable {
        var id: String
        var topic: String
    }
    var instance: String
    var incarnation: Int
    var births: [Status]
    var fenced: String?
    var checkpoints: [Checkpoint]
    var handoff: Handoff?
}
