import Foundation
import Handoff
import HandoffMQTT
import MosquittoClient
import MosquittoTestKit
import Testing

/// `show`, `claim` and `purge` of chunked handoffs (PROTOCOL.md §12): shown and claimed whole, their chunks removed with
/// them, a damaged one dead-lettered whole.
@Suite("handoff show, claim, purge and republish of chunked handoffs", .timeLimit(.minutes(2)))
struct ChunkedCLITests {
    struct Readings: Codable, Sendable {
        var readings: [Int]
    }

    /// A JSON state of about `size` bytes.
    static func state(size: Int) -> String {
        #"{"readings":[\#((0..<(size / 6)).map { String(100 + $0 % 900) }.joined(separator: ","))]}"#
    }

    /// Hands off `json` through a library participant whose chunk size is 1,024 bytes (keyed with `keys`).
    private func initiateChunked(_ fixture: Fixture, _ label: HandoffLabel, json: String, keys: HandoffKeySet? = nil) async throws
        -> HandoffEnvelope
    {
        let predecessor = try await MQTTHandoffTransport.connect(
            configuration: try MQTTConfiguration(url: fixture.broker.plainURL),
            options: .init(prefix: fixture.topics.prefix, willDelay: nil, livenessLease: nil, keys: keys, chunkSize: 1_024),
            origin: HandoffOrigin(instance: "predecessor-1", host: "pod-7", pid: 41), logger: quietLogger
        )
        let handoff = envelope(label, json: json)
        try await predecessor.initiate(handoff, timeout: .seconds(10))
        await predecessor.shutdown()
        return handoff
    }

    /// The topics under `filter` that hold a retained message, read up to an ordering marker (PROTOCOL.md §6).
    private func retainedTopics(_ fixture: Fixture, _ filter: String) async throws -> Set<String> {
        let client = try await fixture.client()
        let messages = client.messages()
        let marker = "\(fixture.topics.prefix)/test-marker/\(UUID().uuidString)"
        try await client.subscribe(marker, options: MQTTSubscribeOptions(qos: .atLeastOnce))
        try await client.subscribe(filter, options: MQTTSubscribeOptions(qos: .atLeastOnce))
        try await client.publish(marker, payload: Data("m".utf8), qos: .atLeastOnce)
        var found: Set<String> = []
        for await message in messages {
            if message.topic == marker { break }
            if message.retain, !message.payload.isEmpty { found.insert(message.topic) }
        }
        await client.shutdown()
        return found
    }

    @Test("show reads and checks the chunks; claim writes the whole state and removes the chunks")
    func showAndClaim() async throws {
        try await withFixture { fixture in
            let label = try HandoffLabel("large")
            let json = Self.state(size: 5_000)
            let initiated = try await initiateChunked(fixture, label, json: json)
            let id = initiated.id.rawValue
            let chunkFilter = fixture.topics.chunkFilter(label, id: id)
            let chunkCount = (json.utf8.count - 1) / 1_024 + 1
            #expect(try await retainedTopics(fixture, chunkFilter).count == chunkCount)

            let shown = try await handoff(["show", "large", id], environment: fixture.environment)
            #expect(shown.status == 0, "\(shown)")
            #expect(shown.stdout.contains("chunks:     \(chunkCount) of \(chunkCount) chunks on the broker"), "\(shown)")
            #expect(shown.stdout.contains("chunks:     verified"), "\(shown)")
            #expect(shown.stdout.contains("\"readings\""), "the state the chunks make is shown: \(shown)")

            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("cli-chunked-\(UUID().uuidString.prefix(8))")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: directory) }
            let file = directory.appendingPathComponent("state.json")
            let claimed = try await handoff(["claim", "large", id, "--to", file.path, "--state-only"], environment: fixture.environment)
            #expect(claimed.status == 0, "\(claimed)")
            #expect(try Data(contentsOf: file) == Data(json.utf8), "the file holds the whole state, not the manifest")
            #expect(try await retainedTopics(fixture, chunkFilter).isEmpty, "the winner removed the chunks")
            #expect(try await retainedTopics(fixture, fixture.topics.handoff(label, id: id)).isEmpty)
        }
    }

    @Test("claim writes the envelope the chunks make, which `republish` reads as any fallback file")
    func claimWholeEnvelope() async throws {
        try await withFixture { fixture in
            let label = try HandoffLabel("large")
            let json = Self.state(size: 3_000)
            let initiated = try await initiateChunked(fixture, label, json: json)
            let file = FileManager.default.temporaryDirectory.appendingPathComponent("cli-chunked-\(UUID().uuidString.prefix(8)).handoff")
            defer { try? FileManager.default.removeItem(at: file) }
            let claimed = try await handoff(["claim", "large", initiated.id.rawValue, "--to", file.path], environment: fixture.environment)
            #expect(claimed.status == 0, "\(claimed)")
            let written = try HandoffEnvelope.decode(try Data(contentsOf: file))
            #expect(!written.isChunkManifest)
            #expect(written.id == initiated.id && written.vsn == initiated.vsn && written.data == Data(json.utf8))
        }
    }

    @Test("--keys: show verifies the manifest and the encrypted envelope its chunks make; claim writes that envelope as sealed")
    func keyed() async throws {
        try await withFixture { fixture in
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("cli-chunked-keys-\(UUID().uuidString.prefix(8))")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: directory) }
            let keyFile = directory.appendingPathComponent("keys")
            try "k1 \(KeyedCLITests.secret.base64EncodedString())\n".write(to: keyFile, atomically: true, encoding: .utf8)
            let keys = try HandoffKeySet(contentsOf: keyFile, encrypts: true)
            let label = try HandoffLabel("large")
            let json = Self.state(size: 4_000)
            let initiated = try await initiateChunked(fixture, label, json: json, keys: keys)
            let id = initiated.id.rawValue

            let shown = try await handoff(["show", "large", id, "--keys", keyFile.path], environment: fixture.environment)
            #expect(shown.status == 0, "\(shown)")
            #expect(shown.lines.contains { $0.hasPrefix("manifest:   signature verified (key k1)") }, "\(shown)")
            #expect(shown.lines.contains { $0.hasPrefix("signature:  verified (key k1)") }, "\(shown)")
            #expect(shown.stdout.contains("\"readings\""), "decrypted: \(shown)")
            let plain = try await handoff(["show", "large", id], environment: fixture.environment)
            #expect(plain.lines.contains { $0.hasPrefix("state:      encrypted with key k1") }, "\(plain)")

            let file = directory.appendingPathComponent("claimed.handoff")
            let claimed = try await handoff(
                ["claim", "large", id, "--to", file.path, "--keys", keyFile.path], environment: fixture.environment)
            #expect(claimed.status == 0, "\(claimed)")
            let written = try HandoffEnvelope.decode(try Data(contentsOf: file))
            #expect(!written.isChunkManifest && written.id == initiated.id)
            #expect(try keys.open(written).data == Data(json.utf8), "the file holds the sealed envelope, which the keys open")
            #expect(written.data != Data(json.utf8), "as sealed: encrypted")
            #expect(try await retainedTopics(fixture, fixture.topics.chunkFilter(label, id: id)).isEmpty)
        }
    }

    @Test("republish: a fallback file larger than the broker's largest message goes out in chunks, and a successor merges it whole")
    func republishChunked() async throws {
        let configDirectory = try MosquittoBroker.configDirectory(appending: ["max_packet_size 65536"])
        defer { try? FileManager.default.removeItem(at: configDirectory) }
        try await withMosquittoBroker(configDirectory: configDirectory) { broker in
            let fixture = Fixture(broker: broker, topics: try HandoffTopics(prefix: "cli-test-\(UUID().uuidString.prefix(8))"))
            let label = try HandoffLabel("large")
            let json = Self.state(size: 200_000)
            let fallback = envelope(label, json: json)
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("cli-fallback-\(UUID().uuidString.prefix(8))")
            defer { try? FileManager.default.removeItem(at: directory) }
            let folder = directory.appendingPathComponent(label.topicLevel)
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            try fallback.encoded().write(to: folder.appendingPathComponent("\(fallback.id).handoff"))

            let result = try await handoff(["republish", directory.path, "--chunk-size", "32768"], environment: fixture.environment)
            #expect(result.status == 0, "\(result)")
            #expect(result.lines.contains { $0.hasPrefix("published  'large'/\(fallback.id)") }, "\(result)")
            let chunks = try await retainedTopics(fixture, fixture.topics.chunkFilter(label, id: fallback.id.rawValue))
            #expect(chunks.count == (fallback.data.count - 1) / 32_768 + 1)

            let successor = try await fixture.participant()
            let channel = HandoffChannel<Readings>(label: label, transport: successor)
            _ = try await channel.subscribe()
            let batch = try await channel.complete()
            #expect(batch.handoffs.map(\.id) == [fallback.id] && batch.rejected.isEmpty, "\(batch.rejected)")
            #expect(batch.handoffs.first?.state.readings.count == 200_000 / 6)
            await channel.merged(batch.handoffs)
            await successor.shutdown()
        }
    }

    @Test("a missing chunk: show fails naming it; claim dead-letters the handoff whole; purge removes the dead letter and the chunks")
    func missingChunk() async throws {
        try await withFixture { fixture in
            let label = try HandoffLabel("large")
            let initiated = try await initiateChunked(fixture, label, json: Self.state(size: 4_000))
            let id = initiated.id.rawValue
            try await fixture.retain(fixture.topics.chunk(label, id: id, index: 1), Data())

            let shown = try await handoff(["show", "large", id], environment: fixture.environment)
            #expect(shown.isCleanFailure(), "\(shown)")
            #expect(shown.stdout.contains("chunks:     FAILED: chunk-missing"), "\(shown)")
            #expect(shown.stderr.contains("chunk 1"), "\(shown)")

            let file = FileManager.default.temporaryDirectory.appendingPathComponent("cli-chunked-\(UUID().uuidString.prefix(8))")
            defer { try? FileManager.default.removeItem(at: file) }
            let claimed = try await handoff(["claim", "large", id, "--to", file.path], environment: fixture.environment)
            #expect(claimed.isCleanFailure(), "\(claimed)")
            #expect(claimed.stderr.contains("chunk-missing") && claimed.stderr.contains("dead letters"), "\(claimed)")
            #expect(!FileManager.default.fileExists(atPath: file.path), "nothing written")
            #expect(try await retainedTopics(fixture, fixture.topics.deadLetter(label, id: id)).count == 1, "dead-lettered whole")
            let chunkFilter = fixture.topics.chunkFilter(label, id: id)
            #expect(!(try await retainedTopics(fixture, chunkFilter).isEmpty), "the chunks stay with the dead letter")

            let purged = try await handoff(["purge", "large", id, "--yes"], environment: fixture.environment)
            #expect(purged.status == 0, "\(purged)")
            #expect(purged.stdout.contains("and its"), "\(purged)")
            #expect(try await retainedTopics(fixture, chunkFilter).isEmpty, "purge removed the chunks too")
            #expect(try await retainedTopics(fixture, fixture.topics.deadLetter(label, id: id)).isEmpty)
        }
    }
}
