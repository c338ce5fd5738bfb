import Foundation
import Handoff
import HandoffTestSupport
import MosquittoClient
import MosquittoTestKit
import Testing

@testable import HandoffMQTT

/// Large states handed off in chunks plus a manifest (docs/PROTOCOL.md §12), through a broker that refuses packets over
/// 1 MB, as brokers in production do (AWS IoT Core 128 KB, EMQX 1 MB by default).
@Suite("Chunked handoffs through a broker with a 1 MB packet limit", .serialized, .timeLimit(.minutes(3)))
struct ChunkingTests {
    struct Big: Codable, Sendable, Equatable {
        var seq: Int
        var text: String
    }

    /// A state whose JSON is about `size` bytes of varied letters (so that a changed chunk changes the state).
    static func big(_ size: Int, seq: Int = 1) -> Big {
        var generator = SystemRandomNumberGenerator()
        let letters = Array("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789".utf8)
        let bytes = (0..<size).map { _ in letters[Int(generator.next() % UInt64(letters.count))] }
        return Big(seq: seq, text: String(decoding: bytes, as: UTF8.self))
    }

    static let fiveMiB = 5 * 1024 * 1024

    static func options(_ prefix: String, chunkSize: Int = 256 * 1024, keys: HandoffKeySet? = nil) -> MQTTHandoffTransport.Options {
        MQTTHandoffTransport.Options(prefix: prefix, willDelay: nil, livenessLease: nil, keys: keys, chunkSize: chunkSize)
    }

    /// A private broker whose `max_packet_size` is 1 MB.
    static func withLimitedBroker(_ body: (MosquittoBroker) async throws -> Void) async throws {
        let directory = try MosquittoBroker.configDirectory(appending: ["max_packet_size 1048576"])
        defer { try? FileManager.default.removeItem(at: directory) }
        try await withMosquittoBroker(configDirectory: directory, body)
    }

    /// The retained message at `topic`, read with a plain client up to an ordering marker.
    static func retained(_ broker: MosquittoBroker, _ topic: String) async throws -> MQTTMessage? {
        try await RogueClientTests.retained(broker, topic)
    }

    /// Waits until `transport` lists `count` waiting handoffs of `label`.
    static func awaitPending(_ transport: MQTTHandoffTransport, _ label: HandoffLabel, count: Int = 1) async throws {
        let seen = try await eventually(upTo: .seconds(20)) { try await transport.pending(label).count == count }
        #expect(seen, "the manifest did not arrive")
    }

    @Test("a 5 MiB state goes through in chunks; sent whole, the same broker refuses it")
    func fiveMiBThroughOneMegabyteLimit() async throws {
        try await Self.withLimitedBroker { broker in
            let prefix = "chunks-\(UUID().uuidString.prefix(8))"
            let label = uniqueLabel("large")
            let state = Self.big(Self.fiveMiB)
            // Unchunked, the packet is over the broker's limit: the publish is refused (libmosquitto honours the Maximum
            // Packet Size the broker announces in its CONNACK), nothing is stored.
            try await withTransport(broker, options: Self.options(prefix, chunkSize: 64 * 1024 * 1024)) { whole in
                let channel = HandoffChannel<Big>(label: label, transport: whole, timeout: .seconds(5))
                let error = await #expect(throws: (any Error).self) { try await channel.initiate(state) }
                #expect(
                    "\(error.map { "\($0)" } ?? "")".contains("larger than the broker"),
                    "refused for its size: \(String(describing: error))")
            }
            try await withTransport(broker, options: Self.options(prefix)) { successor in
                let channel = HandoffChannel<Big>(label: label, transport: successor, timeout: .seconds(30))
                _ = try await channel.subscribe()
                #expect(try await successor.pending(label).isEmpty, "the refused whole state must not be waiting")
                let sent = try await withTransport(broker, options: Self.options(prefix)) { predecessor in
                    try await HandoffChannel<Big>(label: label, transport: predecessor, timeout: .seconds(30)).initiate(state)
                }
                // What waits on the handoff topic is a small manifest; the chunks are retained beside it.
                let manifest = try #require(try await Self.retained(broker, successor.topics.handoff(label, id: sent.id.rawValue)))
                #expect(manifest.payload.count < 64 * 1024)
                let decoded = try HandoffEnvelope.decode(manifest.payload)
                #expect(decoded.isChunkManifest)
                let firstChunk = try await Self.retained(broker, successor.topics.chunk(label, id: sent.id.rawValue, index: 0))
                #expect(firstChunk?.payload.count == 256 * 1024)

                try await Self.awaitPending(successor, label)
                let batch = try await channel.complete()
                #expect(batch.rejected.isEmpty && batch.interruption == nil)
                try #require(batch.handoffs.count == 1)
                #expect(batch.handoffs[0].state == state)
                #expect(batch.handoffs[0].id == sent.id)
                // Merged: the chunks are removed.
                await channel.merged(batch.handoffs)
                #expect(try await Self.retained(broker, successor.topics.chunk(label, id: sent.id.rawValue, index: 0)) == nil)
                let last = (Self.fiveMiB + 20) / (256 * 1024)
                #expect(try await Self.retained(broker, successor.topics.chunk(label, id: sent.id.rawValue, index: last)) == nil)
                #expect(try await Self.retained(broker, successor.topics.handoff(label, id: sent.id.rawValue)) == nil)
            }
        }
    }

    @Test("three successors race for a chunked handoff: exactly one merges it, intact")
    func raceForChunkedHandoff() async throws {
        try await Self.withLimitedBroker { broker in
            let prefix = "chunks-\(UUID().uuidString.prefix(8))"
            let label = uniqueLabel("race")
            let state = Self.big(2 * 1024 * 1024)
            var successors: [MQTTHandoffTransport] = []
            for _ in 0..<3 {
                successors.append(
                    try await MQTTHandoffTransport.connect(
                        configuration: MQTTConfiguration(host: broker.host, port: broker.plainPort), options: Self.options(prefix)))
            }
            let channels = successors.map { HandoffChannel<Big>(label: label, transport: $0, timeout: .seconds(30)) }
            for channel in channels { _ = try await channel.subscribe() }
            try await withTransport(broker, options: Self.options(prefix)) { predecessor in
                _ = try await HandoffChannel<Big>(label: label, transport: predecessor, timeout: .seconds(30)).initiate(state)
            }
            for successor in successors { try await Self.awaitPending(successor, label) }
            let batches = try await withThrowingTaskGroup(of: HandoffBatch<Big>.self) { group in
                for channel in channels { group.addTask { try await channel.complete() } }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            let merged = batches.flatMap(\.handoffs)
            #expect(merged.count == 1)
            #expect(merged.first?.state == state)
            #expect(batches.allSatisfy { $0.rejected.isEmpty && $0.interruption == nil })
            for (channel, batch) in zip(channels, batches) { await channel.merged(batch.handoffs) }
            for successor in successors { await successor.shutdown() }
        }
    }

    /// A chunk changed or removed by a plain MQTT client before the claim: the whole handoff is dead-lettered.
    @Test("a missing or corrupt chunk dead-letters the whole handoff, nothing is merged", arguments: [false, true])
    func damagedChunk(corrupt: Bool) async throws {
        try await Self.withLimitedBroker { broker in
            let prefix = "chunks-\(UUID().uuidString.prefix(8))"
            let label = uniqueLabel(corrupt ? "corrupt" : "missing")
            let state = Self.big(Self.fiveMiB / 2)
            let sent = try await withTransport(broker, options: Self.options(prefix)) { predecessor in
                try await HandoffChannel<Big>(label: label, transport: predecessor, timeout: .seconds(30)).initiate(state)
            }
            let topics = try HandoffTopics(prefix: prefix)
            let chunkTopic = topics.chunk(label, id: sent.id.rawValue, index: 3)
            try await RogueClientTests.attack(broker) { client in
                let payload = corrupt ? Data(repeating: UInt8(ascii: "x"), count: 256 * 1024) : Data()
                try await client.publish(chunkTopic, payload: payload, qos: .atLeastOnce, retain: true)
            }
            let manifest = try #require(try await Self.retained(broker, topics.handoff(label, id: sent.id.rawValue)))
            try await withTransport(broker, options: Self.options(prefix)) { successor in
                let channel = HandoffChannel<Big>(label: label, transport: successor, timeout: .seconds(30))
                _ = try await channel.subscribe()
                try await Self.awaitPending(successor, label)
                let batch = try await channel.complete()
                #expect(batch.handoffs.isEmpty, "no partial state may be merged")
                #expect(batch.rejected.map(\.reason) == [corrupt ? .integrityFailure : .chunkMissing])
                let letters = try await successor.deadLetters(label, timeout: .seconds(10))
                try #require(letters.count == 1)
                #expect(letters[0].reason == (corrupt ? .integrityFailure : .chunkMissing))
                #expect(letters[0].payload == manifest.payload, "the dead letter is the manifest, verbatim")
                // Taken out of the waiting handoffs; the other chunks stay for inspection (and a requeue once repaired).
                #expect(try await Self.retained(broker, topics.handoff(label, id: sent.id.rawValue)) == nil)
                #expect(try await Self.retained(broker, topics.chunk(label, id: sent.id.rawValue, index: 0)) != nil)
            }
        }
    }

    @Test("a successor that won and assembled a chunked handoff gives it back; another one merges it")
    func givenBackAfterWinning() async throws {
        try await Self.withLimitedBroker { broker in
            let prefix = "chunks-\(UUID().uuidString.prefix(8))"
            let label = uniqueLabel("give-back")
            let state = Self.big(1024 * 1024 + 17)
            _ = try await withTransport(broker, options: Self.options(prefix)) { predecessor in
                try await HandoffChannel<Big>(label: label, transport: predecessor, timeout: .seconds(30)).initiate(state)
            }
            try await withTransport(broker, options: Self.options(prefix)) { first in
                let channel = HandoffChannel<Big>(label: label, transport: first, timeout: .seconds(30))
                _ = try await channel.subscribe()
                try await Self.awaitPending(first, label)
                let batch = try await channel.complete()
                try #require(batch.handoffs.count == 1)
                // It stops instead of merging: the manifest goes back as received, the chunks were never removed.
                try await first.release(try #require(batch.handoffs[0].envelope), timeout: .seconds(10))
            }
            try await withTransport(broker, options: Self.options(prefix)) { second in
                let channel = HandoffChannel<Big>(label: label, transport: second, timeout: .seconds(30))
                _ = try await channel.subscribe()
                try await Self.awaitPending(second, label)
                let batch = try await channel.complete()
                #expect(batch.handoffs.map(\.state) == [state])
                await channel.merged(batch.handoffs)
            }
        }
    }

    @Test("a signed and encrypted chunked handoff: the manifest is signed, the chunks are ciphertext")
    func keyedChunkedHandoff() async throws {
        try await Self.withLimitedBroker { broker in
            let prefix = "chunks-\(UUID().uuidString.prefix(8))"
            let label = uniqueLabel("keyed")
            let keys = try RogueClientTests.keys(write: ("k1", RogueClientTests.secret1), encrypts: true)
            let state = Self.big(1024 * 1024)
            let sent = try await withTransport(broker, options: Self.options(prefix, keys: keys)) { predecessor in
                try await HandoffChannel<Big>(label: label, transport: predecessor, timeout: .seconds(30)).initiate(state)
            }
            let topics = try HandoffTopics(prefix: prefix)
            let chunk = try #require(try await Self.retained(broker, topics.chunk(label, id: sent.id.rawValue, index: 0)))
            #expect(!String(decoding: chunk.payload, as: UTF8.self).contains(String(state.text.prefix(64))), "chunks hold ciphertext")
            try await withTransport(broker, options: Self.options(prefix, keys: keys)) { successor in
                let channel = HandoffChannel<Big>(label: label, transport: successor, timeout: .seconds(30))
                _ = try await channel.subscribe()
                try await Self.awaitPending(successor, label)
                let batch = try await channel.complete()
                #expect(batch.handoffs.map(\.state) == [state])
                #expect(batch.rejected.isEmpty)
                await channel.merged(batch.handoffs)
            }
        }
    }

    @Test("states up to the chunk size are sent whole, as before")
    func smallStatesUnchanged() async throws {
        try await Self.withLimitedBroker { broker in
            let prefix = "chunks-\(UUID().uuidString.prefix(8))"
            let label = uniqueLabel("small")
            let sent = try await withTransport(broker, options: Self.options(prefix, chunkSize: 4096)) { predecessor in
                try await HandoffChannel<String>(label: label, transport: predecessor).initiate(String(repeating: "a", count: 4000))
            }
            let topics = try HandoffTopics(prefix: prefix)
            let message = try #require(try await Self.retained(broker, topics.handoff(label, id: sent.id.rawValue)))
            let envelope = try HandoffEnvelope.decode(message.payload)
            #expect(envelope.contentType == "application/json")
            #expect(try await Self.retained(broker, topics.chunk(label, id: sent.id.rawValue, index: 0)) == nil)
        }
    }
}
