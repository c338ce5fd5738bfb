import ClusterTestKit
import Foundation
import Handoff
import HandoffRedis
import MosquittoClient
import MosquittoTestKit
import Synchronization
import Testing

@testable import HandoffMQTT

struct Reading: Codable, Sendable, Hashable {
    var sensor: Int
    var value: Int
}

/// The Redis claim arbiter (docs/PROTOCOL.md §11) against a private redis-server, and with MQTTHandoffTransport on a
/// private mosquitto.
@Suite("Redis claim arbiter", .timeLimit(.minutes(2)))
struct RedisArbiterTests {
    static func label(_ name: String) -> HandoffLabel { try! HandoffLabel("redis/\(name)/\(UUID().uuidString.prefix(8))") }

    /// A participant's options under `prefix`, with an arbiter of its own on `redis` (no Will: no checkpoints here).
    static func options(_ prefix: String, _ redis: RedisServer, timeout: Duration = .seconds(5)) -> MQTTHandoffTransport.Options {
        MQTTHandoffTransport.Options(
            prefix: prefix, willDelay: nil, livenessLease: nil,
            arbiter: RedisClaimArbiter(host: redis.host, port: redis.port, timeout: timeout))
    }

    @Test("of 16 concurrent takes of one handoff exactly one gets the payload, and the store names it")
    func oneWinner() async throws {
        try await withRedisServer { redis in
            let label = Self.label("one")
            let store = RedisClaimArbiter(host: redis.host, port: redis.port)
            for round in 0..<20 {
                let id = "h\(round)"
                try await store.store(prefix: "p", label: label, id: id, payload: Data("payload \(round)".utf8))
                let outcomes = try await withThrowingTaskGroup(of: (String, HandoffArbitration).self) { group in
                    for claimer in 0..<16 {
                        group.addTask {
                            let own = RedisClaimArbiter(host: redis.host, port: redis.port)
                            return ("c\(claimer)", try await own.take(prefix: "p", label: label, id: id, for: "c\(claimer)"))
                        }
                    }
                    return try await group.reduce(into: [(String, HandoffArbitration)]()) { $0.append($1) }
                }
                let winners = outcomes.filter { $0.1 != .lost }
                #expect(winners.count == 1, "round \(round): \(winners.count) winners")
                #expect(winners.first?.1 == .won(payload: Data("payload \(round)".utf8)))
                #expect(try await store.winner(prefix: "p", label: label, id: id) == winners.first?.0)
            }
            #expect(try await store.waiting(prefix: "p", label: label).isEmpty)
        }
    }

    @Test(
        "8 successors with the Redis arbiter race for 200 handoffs, half waiting before they subscribe: each merged once, the store's winner"
    )
    func race() async throws {
        try await withRedisServer { redis in
            try await withMosquittoBroker { broker in
                let label = Self.label("race")
                let configuration = MQTTConfiguration(host: broker.host, port: broker.plainPort)
                func options() -> MQTTHandoffTransport.Options { Self.options("redis-race", redis) }
                let predecessor = try await MQTTHandoffTransport.connect(configuration: configuration, options: options())
                let sender = HandoffChannel<Reading>(label: label, transport: predecessor)
                var expected: [String: Reading] = [:]
                for n in 0..<100 {
                    expected[try await sender.initiate(Reading(sensor: n, value: n * 3)).id.rawValue] = Reading(sensor: n, value: n * 3)
                }

                let merges = Merges()
                var successors: [MQTTHandoffTransport] = []
                var channels: [HandoffChannel<Reading>] = []
                for _ in 0..<8 {
                    let transport = try await MQTTHandoffTransport.connect(configuration: configuration, options: options())
                    let channel = HandoffChannel<Reading>(label: label, transport: transport)
                    _ = try await channel.subscribe()
                    successors.append(transport)
                    channels.append(channel)
                }
                let workers = zip(successors, channels).map { transport, channel in
                    Task {
                        while !Task.isCancelled {
                            let batch = try await channel.complete()
                            merges.withLock { merges in
                                for handoff in batch.handoffs { merges[handoff.id.rawValue, default: []].append(transport.origin.instance) }
                            }
                            try await Task.sleep(for: .milliseconds(20))
                        }
                    }
                }
                for n in 100..<200 {
                    expected[try await sender.initiate(Reading(sensor: n, value: n * 3)).id.rawValue] = Reading(sensor: n, value: n * 3)
                }
                #expect(await eventually(upTo: .seconds(60)) { merges.withLock { Set($0.keys) } == Set(expected.keys) })
                try await Task.sleep(for: .milliseconds(300))
                for worker in workers { worker.cancel() }
                let merged = merges.withLock { $0 }
                #expect(merged.filter { $0.value.count != 1 }.isEmpty, "merged more than once")
                let arbiter = RedisClaimArbiter(host: redis.host, port: redis.port)
                for (id, instances) in merged.prefix(50) {
                    #expect(try await arbiter.winner(prefix: "redis-race", label: label, id: id) == instances.first)
                }
                #expect(try await arbiter.waiting(prefix: "redis-race", label: label).isEmpty)
                for transport in successors { await transport.shutdown() }
                await predecessor.shutdown()
            }
        }
    }

    @Test("a handoff published without the store (a fallback file republished, another client) is taken once")
    func handoffsTheStoreNeverHad() async throws {
        try await withRedisServer { redis in
            try await withMosquittoBroker { broker in
                let label = Self.label("adopted")
                let configuration = MQTTConfiguration(host: broker.host, port: broker.plainPort)
                let options = Self.options("redis-adopt", redis)
                let envelope = HandoffEnvelope(
                    label: label, vsn: 1, origin: HandoffOrigin(instance: "plain-client"),
                    data: try JSONEncoder().encode(Reading(sensor: 1, value: 2)))
                let topic = try HandoffTopics(prefix: "redis-adopt").handoff(label, id: envelope.id.rawValue)
                try await MQTTClient.withConnection(configuration) { client in
                    try await client.publish(topic, payload: envelope.encoded(), qos: .atLeastOnce, retain: true)
                }
                var merged: [Reading] = []
                var transports: [MQTTHandoffTransport] = []
                for _ in 0..<4 {
                    let transport = try await MQTTHandoffTransport.connect(configuration: configuration, options: options)
                    transports.append(transport)
                    let channel = HandoffChannel<Reading>(label: label, transport: transport)
                    _ = try await channel.subscribe()
                    merged += try await channel.complete().handoffs.map(\.state)
                }
                #expect(merged == [Reading(sensor: 1, value: 2)])
                for transport in transports { await transport.shutdown() }
            }
        }
    }

    @Test("the store down: initiate and claims fail with arbiterUnavailable, nothing is lost or merged twice; back up, each is merged once")
    func storeDown() async throws {
        try await withRedisServer { redis in
            try await withMosquittoBroker { broker in
                let label = Self.label("down")
                let configuration = MQTTConfiguration(host: broker.host, port: broker.plainPort)
                func options() -> MQTTHandoffTransport.Options { Self.options("redis-down", redis, timeout: .seconds(1)) }
                let predecessor = try await MQTTHandoffTransport.connect(configuration: configuration, options: options())
                let sender = HandoffChannel<Reading>(label: label, transport: predecessor)
                for n in 0..<3 { _ = try await sender.initiate(Reading(sensor: n, value: n)) }
                let successor = try await MQTTHandoffTransport.connect(configuration: configuration, options: options())
                let channel = HandoffChannel<Reading>(label: label, transport: successor)
                _ = try await channel.subscribe()

                redis.crash()
                await #expect {
                    _ = try await sender.initiate(Reading(sensor: 9, value: 9))
                } throws: { error in
                    return (error as? HandoffError)?.code == .arbiterUnavailable
                }
                let failed = try await channel.complete()
                #expect(failed.handoffs.isEmpty)
                let interruption = try #require(failed.interruption)
                guard (interruption as? HandoffError)?.code == .arbiterUnavailable else {
                    Issue.record("the claim failed with \(interruption), not arbiterUnavailable")
                    return
                }

                try await redis.restart()
                let merged = try await channel.complete().handoffs.map(\.state.sensor).sorted()
                #expect(merged == [0, 1, 2])
                let late = try await MQTTHandoffTransport.connect(configuration: configuration, options: options())
                let lateChannel = HandoffChannel<Reading>(label: label, transport: late)
                _ = try await lateChannel.subscribe()
                #expect(try await lateChannel.complete().handoffs.isEmpty, "merged twice")
                await late.shutdown()
                await successor.shutdown()
                await predecessor.shutdown()
            }
        }
    }
}

/// Who merged which handoff, across the racing tasks.
final class Merges: Sendable {
    private let state = Mutex<[String: [String]]>([:])
    func withLock<T>(_ body: (inout [String: [String]]) -> T) -> T { state.withLock { body(&$0) } }
}
