import ClusterTestKit
import Foundation
import Handoff
import HandoffRedis
import HandoffTestKit
import MosquittoClient
import Synchronization
import Testing

@testable import HandoffMQTT

struct Sample: Codable, Sendable, Hashable {
    var node: Int
    var n: Int
}

/// Who merged which handoff, across the racing tasks.
final class MergeLog: Sendable {
    private let state = Mutex<[String: [String]]>([:])
    func record(_ id: String, by instance: String) { state.withLock { $0[id, default: []].append(instance) } }
    var merges: [String: [String]] { state.withLock { $0 } }
}

/// Handoff races on a 2-node ejabberd cluster: the broker-order arbiter (docs/PROTOCOL.md §5) against the Redis arbiter
/// (§11), 8 successors on each node, handoffs initiated through both nodes, half of them waiting before anyone subscribes.
@Suite("Claims on a clustered broker (2 ejabberd nodes)", .serialized, .timeLimit(.minutes(6)))
struct ClusterRaceTests {
    struct Outcome: CustomStringConvertible {
        var handoffs: Int
        var duplicates: Int
        var lost: Int
        var disagreements: Int

        var description: String {
            "\(handoffs) handoffs: \(duplicates) merged twice or more, \(lost) merged by nobody, \(disagreements) on which the "
                + "successors of the two nodes saw different first claims"
        }
    }

    /// Runs one race under `prefix` and returns what happened. With `arbiter`, every participant uses it.
    static func race(
        _ cluster: EjabberdCluster, prefix: String, handoffs: Int, arbiter: (@Sendable () -> any HandoffClaimArbiter)?, quiet: Duration
    ) async throws -> (Outcome, [String: [String]], [MQTTHandoffTransport], HandoffLabel) {
        let label = try HandoffLabel("cluster/race")
        func connect(_ node: EjabberdCluster.Node) async throws -> MQTTHandoffTransport {
            try await MQTTHandoffTransport.connect(
                configuration: configuration(node),
                options: MQTTHandoffTransport.Options(prefix: prefix, willDelay: nil, livenessLease: nil, arbiter: arbiter?())
            )
        }
        // What each node delivers, in its order: the first claim of each round (the broker-order rule).
        let observers = try await cluster.nodes.asyncMap { try await RoundObserver.start(configuration: configuration($0), prefix: prefix) }
        let predecessors = try await cluster.nodes.asyncMap { try await connect($0) }
        let senders = predecessors.map { HandoffChannel<Sample>(label: label, transport: $0, timeout: .seconds(30)) }
        let expected = Mutex<Set<String>>([])
        func initiate(_ range: Range<Int>) async throws {
            try await withThrowingTaskGroup(of: String.self) { group in
                for n in range {
                    let node = n % senders.count
                    group.addTask { try await senders[node].initiate(Sample(node: node, n: n)).id.rawValue }
                }
                for try await id in group { _ = expected.withLock { $0.insert(id) } }
            }
        }
        try await initiate(0..<(handoffs / 2))

        var successors: [(MQTTHandoffTransport, HandoffChannel<Sample>)] = []
        for node in cluster.nodes {
            for _ in 0..<8 {
                let transport = try await connect(node)
                let channel = HandoffChannel<Sample>(label: label, transport: transport, timeout: .seconds(5))
                _ = try await channel.subscribe()
                successors.append((transport, channel))
            }
        }
        let log = MergeLog()
        let workers = successors.map { transport, channel in
            Task {
                while !Task.isCancelled {
                    let batch = try await channel.complete()
                    for handoff in batch.handoffs { log.record(handoff.id.rawValue, by: transport.origin.instance) }
                    try await Task.sleep(for: .milliseconds(batch.handoffs.isEmpty ? 50 : 1))
                }
            }
        }
        try await initiate((handoffs / 2)..<handoffs)
        let all = expected.withLock { $0 }
        #expect(all.count == handoffs)
        // Until every handoff is merged, or nothing more is merged for `quiet` (the broker-order arbiter loses some).
        var last = (count: -1, at: ContinuousClock.now)
        while true {
            let merged = Set(log.merges.keys)
            if merged.isSuperset(of: all) { break }
            if merged.count != last.count { last = (merged.count, .now) }
            if last.at.duration(to: .now) > quiet { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        try await Task.sleep(for: .milliseconds(500))  // late duplicates would show up here
        for worker in workers { worker.cancel() }
        let merges = log.merges
        let transports = successors.map(\.0)
        // The verdicts as node A and node B delivered them (the broker-order rule: the first claim).
        let disagreements = all.count { id in
            let winners = observers.map { $0.winner(label, id) }
            return winners.allSatisfy { $0 != nil } && Set(winners).count > 1
        }
        for observer in observers { await observer.stop() }
        let outcome = Outcome(
            handoffs: all.count,
            duplicates: merges.values.count { $0.count > 1 },
            lost: all.subtracting(merges.keys).count,
            disagreements: disagreements
        )
        for predecessor in predecessors { await predecessor.shutdown() }
        return (outcome, merges, transports, label)
    }

    @Test(
        "with the Redis arbiter, 8 successors on each node race for 1,000 handoffs initiated through both: 0 duplicates, 0 lost, all agree; the broker-order arbiter's result printed beside it"
    )
    func redisArbiterAgainstBrokerOrder() async throws {
        try await withRedisServer { redis in
            try await withEjabberdCluster { cluster in
                let brokerOrder = try await Self.race(
                    cluster, prefix: "order-\(UUID().uuidString.prefix(6))", handoffs: 200, arbiter: nil, quiet: .seconds(8))
                for transport in brokerOrder.2 { await transport.shutdown() }

                let prefix = "redis-\(UUID().uuidString.prefix(6))"
                let (outcome, merges, transports, label) = try await Self.race(
                    cluster, prefix: prefix, handoffs: 1_000, arbiter: { RedisClaimArbiter(host: redis.host, port: redis.port) },
                    quiet: .seconds(30)
                )
                print("broker-order arbiter on 2 ejabberd nodes: \(brokerOrder.0)")
                print("Redis arbiter on 2 ejabberd nodes:        \(outcome) (first claims decide nothing there: the store does)")
                #expect(outcome.duplicates == 0, "\(outcome)")
                #expect(outcome.lost == 0, "\(outcome)")
                // All agree: the store names each handoff's one merger.
                let store = RedisClaimArbiter(host: redis.host, port: redis.port)
                var disagreeing = 0
                for (id, mergers) in merges where try await store.winner(prefix: prefix, label: label, id: id) != mergers.first {
                    disagreeing += 1
                }
                #expect(disagreeing == 0, "\(disagreeing) handoffs merged by another participant than the store's winner")
                #expect(try await store.waiting(prefix: prefix, label: label).isEmpty)
                for transport in transports { await transport.shutdown() }
            }
        }
    }
}

extension Array {
    func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
        var out: [T] = []
        for element in self { out.append(try await transform(element)) }
        return out
    }
}
