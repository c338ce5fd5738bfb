import Foundation
import Handoff
import HandoffTestSupport
import MosquittoClient
import MosquittoTestKit
import Testing

@testable import HandoffMQTT

struct Tally: Codable, Sendable, Equatable {
    var count: Int
    var note: String
}

/// Wire-level behaviour of the MQTT backend against a real mosquitto.
@Suite("MQTT handoff backend against a real mosquitto", .timeLimit(.minutes(2)))
struct MQTTHandoffIntegrationTests {
    @Test("an acknowledged handoff survives a broker restart between initiate and claim")
    func survivesBrokerRestart() async throws {
        try await withMosquittoBroker { broker in
            let label = try HandoffLabel("durable")
            try await withTransport(broker) { predecessor in
                try await HandoffChannel<Tally>(label: label, transport: predecessor).initiate(Tally(count: 7, note: "before restart"))
            }
            try await broker.restart()
            try await withTransport(broker) { successor in
                let channel = HandoffChannel<Tally>(label: label, transport: successor)
                _ = try await channel.subscribe()
                let batch = try await channel.complete()
                #expect(batch.handoffs.map(\.state) == [Tally(count: 7, note: "before restart")])
            }
        }
    }

    @Test("a 3 MiB state, routed off the network thread, and the small ones behind it arrive intact and in order")
    func largeStateAmongSmallOnes() async throws {
        try await withMosquittoBroker { broker in
            let label = uniqueLabel("large")
            let big = Tally(count: 1, note: String(repeating: "0123456789abcdef", count: 3 * 65_536))
            try await withTransport(broker) { successor in
                let channel = HandoffChannel<Tally>(label: label, transport: successor)
                let notices = NoticeRecorder(try await channel.subscribe())
                try await withTransport(broker) { predecessor in
                    let sender = HandoffChannel<Tally>(label: label, transport: predecessor)
                    _ = try await sender.initiate(big)
                    for n in 2...4 { _ = try await sender.initiate(Tally(count: n, note: "small")) }
                }
                #expect(await notices.wait { notices, _ in notices.count >= 4 })
                try await successor.sync(timeout: .seconds(10))
                let states = try await channel.complete().handoffs.map(\.state).sorted { $0.count < $1.count }
                #expect(states.map(\.count) == [1, 2, 3, 4])
                #expect(states.first == big)
            }
        }
    }

    @Test("garbage, truncated, wrong-typed and oversized messages go to the dead letters with the reason; the successor keeps working")
    func hostilePublishers() async throws {
        try await withMosquittoBroker { broker in
            let label = try HandoffLabel("hostile")
            var options = MQTTHandoffTransport.Options()
            options.maximumPayloadSize = 64 * 1024
            let valid = HandoffEnvelope(
                id: .random(), label: label, vsn: 1, origin: .current(), contentType: "application/json",
                data: Data(#"{"count":1,"note":"ok"}"#.utf8))
            var truncated = valid.encoded()
            truncated.removeLast(3)
            let other = HandoffEnvelope(
                id: .random(), label: label, vsn: 1, origin: .current(), contentType: "application/json",
                data: Data(#"{"count":2,"note":"ok"}"#.utf8))
            var corrupted = other.encoded()
            corrupted[corrupted.count - 2] ^= 0x01
            let wrongTyped = HandoffEnvelope(
                id: .random(), label: label, vsn: 1, origin: .current(), contentType: "application/json",
                data: Data(#"{"count":"many"}"#.utf8))
            let foreign: [(id: String, payload: Data, reason: HandoffRejection.Reason)] = [
                ("garbage", Data([0xDE, 0xAD, 0xBE, 0xEF, 0x00, 0x0A, 0xFF]), .malformed),
                ("empty-json", Data("{}\n".utf8), .malformed),
                (valid.id.rawValue, truncated, .truncated),
                (other.id.rawValue, corrupted, .integrityFailure),
                ("mislabelled", other.encoded(), .labelMismatch),
                ("huge", Data(repeating: 0x41, count: 100_000), .tooLarge),
                (wrongTyped.id.rawValue, wrongTyped.encoded(), .undecodableState),
            ]
            try await withTransport(broker, options: options) { successor in
                let channel = HandoffChannel<Tally>(label: label, transport: successor)
                let notices = try await channel.subscribe()
                try await MQTTClient.withConnection(MQTTConfiguration(host: broker.host, port: broker.plainPort)) { hostile in
                    for message in foreign {
                        try await hostile.publish(
                            successor.topics.handoff(label, id: message.id), payload: message.payload, qos: .atLeastOnce, retain: true)
                    }
                }
                // The transport rejects what is not an envelope by itself; complete() rejects the bad state.
                var rejected: [HandoffRejection] = []
                var iterator = notices.makeAsyncIterator()
                while rejected.count < foreign.count - 1, let notice = await iterator.next() {
                    if case .rejected(let rejection) = notice { rejected.append(rejection) }
                }
                let batch = try await channel.complete()
                rejected += batch.rejected
                #expect(batch.handoffs.isEmpty)
                #expect(Set(rejected.map(\.id)) == Set(foreign.map(\.id)))
                #expect(rejected.allSatisfy { $0.disposition == .deadLettered })

                let letters = try await successor.deadLetters(label, timeout: .seconds(10))
                #expect(Set(letters.map(\.id)) == Set(foreign.map(\.id)))
                for message in foreign {
                    let letter = try #require(letters.first { $0.id == message.id })
                    #expect(letter.payload == message.payload, "dead letter of \(message.id) is not verbatim")
                    #expect(letter.reason == message.reason, "\(message.id): \(letter.reason)")
                    #expect(!letter.detail.isEmpty)
                }

                // And it still works.
                try await withTransport(broker) { predecessor in
                    try await HandoffChannel<Tally>(label: label, transport: predecessor).initiate(Tally(count: 3, note: "after the noise"))
                }
                var handoffs: [ClaimedHandoff<Tally>] = []
                while handoffs.isEmpty, let notice = await iterator.next() {
                    if case .available = notice { handoffs += try await channel.complete().handoffs }
                }
                #expect(handoffs.map(\.state) == [Tally(count: 3, note: "after the noise")])
            }
        }
    }

    @Test("a handoff of a version the successor cannot read stays on the broker untouched")
    func unknownVersionStays() async throws {
        try await withMosquittoBroker { broker in
            let label = try HandoffLabel("versions")
            let newer = try await withTransport(broker) { predecessor in
                try await HandoffChannel<Tally>(label: label, transport: predecessor, version: 9).initiate(
                    Tally(count: 1, note: "from the future"))
            }
            try await withTransport(broker) { successor in
                let channel = HandoffChannel<Tally>(label: label, transport: successor, version: 2)
                _ = try await channel.subscribe()
                let batch = try await channel.complete()
                #expect(batch.handoffs.isEmpty)
                #expect(batch.deferred.map(\.id) == [newer.id.rawValue])
                #expect(batch.deferred.first?.reason == .unknownVersion)
                #expect(batch.deferred.first?.disposition == .leftInPlace)
            }
            // Still retained, byte for byte.
            try await MQTTClient.withConnection(MQTTConfiguration(host: broker.host, port: broker.plainPort)) { observer in
                let messages = observer.messages()
                try await observer.subscribe("handoff/handoffs/versions/+")
                let retained = try #require(await messages.first { _ in true })
                #expect(retained.retain)
                #expect(retained.payload == newer.encoded())
            }
        }
    }

    @Test("a claim interrupted by a cut connection is resolved after the reconnect")
    func cutMidClaim() async throws {
        try await withMosquittoBroker { broker in
            let proxy = try await TCPProxy.start(forwardingTo: broker.plainPort)
            defer { proxy.stop() }
            let label = try HandoffLabel("cut")
            var configuration = MQTTConfiguration(host: broker.host, port: proxy.port)
            configuration.reconnect = .init(initialDelay: .seconds(1), maximumDelay: .seconds(1))
            let successor = try await MQTTHandoffTransport.connect(configuration: configuration)
            let channel = HandoffChannel<Tally>(label: label, transport: successor, timeout: .seconds(20))
            _ = try await channel.subscribe()
            try await withTransport(broker) { predecessor in
                let sender = HandoffChannel<Tally>(label: label, transport: predecessor)
                for index in 0..<50 { try await sender.initiate(Tally(count: index, note: "cut")) }
            }
            try await successor.sync(timeout: .seconds(10))
            await proxy.pause()  // claims go out into a network that swallows them...
            let completion = Task { try await channel.complete() }
            try await Task.sleep(for: .milliseconds(300))
            await proxy.cutAllConnections()  // ...and the connection dies mid-claim
            await proxy.resume()
            let batch = try await completion.value
            #expect(batch.handoffs.map(\.state.count).sorted() == Array(0..<50))
            await successor.shutdown()
        }
    }

    @Test("successors racing while the broker is SIGKILLed and restarted merge no handoff twice and lose none")
    func brokerKilledMidRace() async throws {
        try await withMosquittoBroker { broker in
            let label = try HandoffLabel("killed")
            let total = 100
            var expected: Set<String> = []
            try await withTransport(broker) { predecessor in
                let sender = HandoffChannel<Tally>(label: label, transport: predecessor)
                for index in 0..<total { expected.insert(try await sender.initiate(Tally(count: index, note: "kill")).id.rawValue) }
            }
            var configuration = MQTTConfiguration(host: broker.host, port: broker.plainPort)
            configuration.reconnect = .init(initialDelay: .seconds(1), maximumDelay: .seconds(1))
            let merged = Locked<[String: Int]>([:])
            var successors: [MQTTHandoffTransport] = []
            for _ in 0..<2 { successors.append(try await MQTTHandoffTransport.connect(configuration: configuration)) }
            let workers = successors.map { transport in
                Task {
                    let channel = HandoffChannel<Tally>(label: label, transport: transport, timeout: .seconds(20))
                    // The broker may die while the channel subscribes: subscribe again until it is back.
                    var subscribed: AsyncStream<HandoffNotice>?
                    while subscribed == nil, !Task.isCancelled {
                        subscribed = try? await channel.subscribe()
                        if subscribed == nil { try? await Task.sleep(for: .milliseconds(200)) }
                    }
                    guard let notices = subscribed else { return }
                    func drain() async {
                        guard let batch = try? await channel.complete() else { return }
                        merged.withLock { merged in
                            for handoff in batch.handoffs { merged[handoff.id.rawValue, default: 0] += 1 }
                        }
                    }
                    await drain()
                    for await _ in notices { await drain() }
                }
            }
            try await Task.sleep(for: .milliseconds(20))
            await broker.kill()
            try await broker.start()
            let deadline = ContinuousClock.now + .seconds(60)
            var deadLettered: Set<String> = []
            while ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(500))
                deadLettered = Set(try await withTransport(broker) { try await $0.deadLetters(label, timeout: .seconds(10)) }.map(\.id))
                if Set(merged.withLock { $0.keys }).union(deadLettered) == expected { break }
            }
            try await Task.sleep(for: .seconds(1))  // a duplicate merge, if any, would show up now
            let result = merged.withLock { $0 }
            #expect(result.values.allSatisfy { $0 == 1 }, "merged twice: \(result.filter { $0.value > 1 }.keys.sorted())")
            #expect(
                Set(result.keys).union(deadLettered) == expected,
                "lost: \(expected.subtracting(result.keys).subtracting(deadLettered).count)")
            for worker in workers { worker.cancel() }
            for transport in successors { await transport.shutdown() }
        }
    }

    @Test("a clear without a claim property is not a claim")
    func foreignClearIsNotAClaim() async throws {
        try await withMosquittoBroker { broker in
            let label = try HandoffLabel("foreign-clear")
            try await withTransport(broker) { successor in
                let channel = HandoffChannel<Tally>(label: label, transport: successor)
                let notices = try await channel.subscribe()
                let envelope = try await withTransport(broker) { predecessor in
                    try await HandoffChannel<Tally>(label: label, transport: predecessor).initiate(Tally(count: 5, note: "held"))
                }
                var iterator = notices.makeAsyncIterator()
                _ = await iterator.next()
                try await MQTTClient.withConnection(MQTTConfiguration(host: broker.host, port: broker.plainPort)) { operator_ in
                    try await operator_.publish(
                        successor.topics.handoff(label, id: envelope.id.rawValue), payload: Data(), qos: .atLeastOnce, retain: true)
                }
                try await successor.sync(timeout: .seconds(5))
                let batch = try await channel.complete()
                #expect(batch.handoffs.map(\.state) == [Tally(count: 5, note: "held")])
            }
        }
    }

    @Test("garbage published on the topic of a waiting handoff is dead-lettered, and the handoff is still merged")
    func garbageOnAnOpenRound() async throws {
        try await withMosquittoBroker { broker in
            let label = try HandoffLabel("garbage-on-open-round")
            try await withTransport(broker) { successor in
                let channel = HandoffChannel<Tally>(label: label, transport: successor)
                let notices = try await channel.subscribe()
                let envelope = try await withTransport(broker) { predecessor in
                    try await HandoffChannel<Tally>(label: label, transport: predecessor).initiate(Tally(count: 8, note: "real"))
                }
                var iterator = notices.makeAsyncIterator()
                _ = await iterator.next()
                // A careless client overwrites the retained handoff with something that is not an envelope.
                let topic = successor.topics.handoff(label, id: envelope.id.rawValue)
                try await MQTTClient.withConnection(MQTTConfiguration(host: broker.host, port: broker.plainPort)) { writer in
                    try await writer.publish(topic, payload: Data("not an envelope".utf8), qos: .atLeastOnce, retain: true)
                }
                guard case .rejected(let rejection) = await iterator.next() else {
                    Issue.record("expected the garbage to be reported")
                    return
                }
                #expect(rejection.reason == .malformed && rejection.disposition == .deadLettered)
                // The handoff seen before is still claimable, and its claim clears the garbage from the broker.
                let batch = try await channel.complete()
                #expect(batch.handoffs.map(\.state) == [Tally(count: 8, note: "real")])
                let letters = try await successor.deadLetters(label, timeout: .seconds(10))
                #expect(letters.map(\.payload) == [Data("not an envelope".utf8)])
                try await withTransport(broker) { late in
                    _ = try await late.watch(label)
                    #expect(try await late.pending(label).isEmpty, "the garbage or the handoff is still retained")
                }
            }
        }
    }

    @Test("a dead letter's time is read in any RFC 3339 form, as other implementations may write it")
    func deadLetterTimesOfOtherWriters() async throws {
        try await withMosquittoBroker { broker in
            let label = try HandoffLabel("foreign-dead-letters")
            let times = [
                "without-fraction": ("2026-11-25T06:00:00Z", 1_795_586_400.0),
                "with-fraction": ("2026-11-25T06:00:00.250Z", 1_795_586_400.25),
                "with-offset": ("2026-11-25T08:00:00.5+02:00", 1_795_586_400.5),
            ]
            try await withTransport(broker) { reader in
                try await MQTTClient.withConnection(MQTTConfiguration(host: broker.host, port: broker.plainPort)) { writer in
                    for (id, time) in times {
                        let properties = MQTTPublishProperties(userProperties: [
                            MQTTUserProperty("handoff-dead-reason", "malformed"),
                            MQTTUserProperty("handoff-dead-detail", "written by another implementation"),
                            MQTTUserProperty("handoff-dead-by", "other"),
                            MQTTUserProperty("handoff-dead-at", time.0),
                            MQTTUserProperty("handoff-dead-topic", reader.topics.handoff(label, id: id)),
                        ])
                        try await writer.publish(
                            reader.topics.deadLetter(label, id: id), payload: Data("x".utf8), qos: .atLeastOnce, retain: true,
                            properties: properties)
                    }
                }
                let letters = try await reader.deadLetters(label, timeout: .seconds(10))
                #expect(letters.count == times.count)
                for letter in letters {
                    let expected = try #require(times[letter.id])
                    #expect(letter.rejectedAt == Date(timeIntervalSince1970: expected.1), "\(expected.0) read as \(letter.rejectedAt)")
                }
            }
        }
    }

    @Test(
        "prefixes that would break the topic layout are refused", arguments: ["", "$SYS", "a/+/b", "a/#", "a//b", "/a", "a/", "nul\u{0}"])
    func badPrefixes(prefix: String) {
        #expect(throws: HandoffError.self) { try HandoffTopics(prefix: prefix) }
    }

    @Test("labels that would break the topic layout are encoded into one safe level")
    func labelsStayInOneLevel() throws {
        let topics = try HandoffTopics(prefix: "handoff")
        for raw in ["a/b", "+", "#", "$SYS", "50%", "é", "a b"] {
            let topic = topics.handoff(try HandoffLabel(raw), id: "x")
            #expect(topic.split(separator: "/").count == 4, "\(raw) -> \(topic)")
            #expect(!topic.contains("+") && !topic.contains("#"))
        }
    }
}

/// Connects an MQTT handoff transport to the broker's anonymous listener, runs `body`, shuts it down.
@discardableResult
func withTransport<T: Sendable>(
    _ broker: MosquittoBroker,
    options: MQTTHandoffTransport.Options = MQTTHandoffTransport.Options(),
    _ body: (MQTTHandoffTransport) async throws -> T
) async throws -> T {
    let transport = try await MQTTHandoffTransport.connect(
        configuration: MQTTConfiguration(host: broker.host, port: broker.plainPort), options: options)
    do {
        let result = try await body(transport)
        await transport.shutdown()
        return result
    } catch {
        await transport.shutdown()
        throw error
    }
}

/// The transport conformance scenarios, run against the MQTT backend and a real mosquitto.
@Suite("Transport conformance: MQTT backend", .timeLimit(.minutes(2)))
struct MQTTTransportConformanceTests {
    struct Factory: HandoffTransportFactory {
        let broker: MosquittoBroker
        func makeTransport(instance: String) async throws -> any HandoffTransport {
            try await MQTTHandoffTransport.connect(
                configuration: MQTTConfiguration(host: broker.host, port: broker.plainPort), origin: HandoffOrigin(instance: instance)
            )
        }
        func release(_ transport: any HandoffTransport) async {
            await (transport as? MQTTHandoffTransport)?.shutdown()
        }
    }

    @Test(arguments: TransportScenario.allCases)
    func scenario(_ scenario: TransportScenario) async throws {
        try await withMosquittoBroker { broker in
            try await scenario.run(using: Factory(broker: broker))
        }
    }
}
