import Foundation
import Handoff
import HandoffTestKit
import HandoffTestSupport
import MosquittoClient
import MosquittoTestKit
import Synchronization
import Testing

@testable import HandoffMQTT

/// Many successors on separate connections race for many handoffs through a real mosquitto.
@Suite("Claim contention against a real mosquitto", .timeLimit(.minutes(3)))
struct ContentionTests {
    static let successorCount = 16
    static let handoffCount = 1_000

    @Test("16 successors race for 1,000 handoffs: each is claimed by exactly one, none is lost, all agree on the winner")
    func sixteenSuccessorsThousandHandoffs() async throws {
        // 17,000 retained changes: a broker that saves its store after each one makes this a test of the disk, and of
        // the other suites running beside it; the claim rule does not depend on when the broker saves.
        let configDirectory = try MosquittoBroker.timeSavedConfigDirectory()
        defer { try? FileManager.default.removeItem(at: configDirectory) }
        try await withMosquittoBroker(configDirectory: configDirectory) { broker in
            let configuration = MQTTConfiguration(host: broker.host, port: broker.plainPort)
            let options = MQTTHandoffTransport.Options(prefix: "race-\(UUID().uuidString.prefix(8))")
            let label = try HandoffLabel("race")
            let predecessor = try await MQTTHandoffTransport.connect(configuration: configuration, options: options)
            let observer = try await RoundObserver.start(configuration: configuration, prefix: options.prefix)
            // 500 handoffs published at once on a broker that saves its store after each: allow for a loaded machine.
            let sender = HandoffChannel<Int>(label: label, transport: predecessor, timeout: .seconds(60))

            // Half of the handoffs wait before any successor subscribes.
            var expected: Set<String> = []
            try await initiate(range: 0..<(Self.handoffCount / 2), on: sender, into: &expected)

            var successors: [MQTTHandoffTransport] = []
            for _ in 0..<Self.successorCount {
                successors.append(try await MQTTHandoffTransport.connect(configuration: configuration, options: options))
            }
            let claimed = Locked<[String: [String]]>([:])  // handoff id -> instances that merged it
            let values = Locked<[Int]>([])
            let workers = successors.map { transport in
                Task {
                    let channel = HandoffChannel<Int>(label: label, transport: transport, timeout: .seconds(30))
                    let notices = try await channel.subscribe()
                    try await drain(channel, into: claimed, values: values, instance: transport.origin.instance)
                    for await notice in notices {
                        guard case .available = notice else { continue }
                        try await drain(channel, into: claimed, values: values, instance: transport.origin.instance)
                    }
                }
            }

            // The other half arrives while they are subscribed.
            try await initiate(range: (Self.handoffCount / 2)..<Self.handoffCount, on: sender, into: &expected)

            let deadline = ContinuousClock.now + .seconds(90)
            while claimed.withLock({ $0.count }) < Self.handoffCount, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(50))
            }
            // Give late duplicate merges, if any, the chance to show up.
            try await Task.sleep(for: .milliseconds(500))

            let result = claimed.withLock { $0 }
            #expect(Set(result.keys) == expected, "lost: \(expected.subtracting(result.keys).count)")
            let duplicates = result.filter { $0.value.count != 1 }
            #expect(duplicates.isEmpty, "merged more than once: \(duplicates.count)")
            #expect(values.withLock { $0.sorted() } == Array(0..<Self.handoffCount))

            // The first claim of each round, in the broker's order, names the one that merged it.
            for (id, owners) in result {
                let winner = await observer.winner(label, id, within: .seconds(5))
                #expect(winner == owners.first, "the broker's order names \(winner ?? "nobody") for \(id), merged by \(owners)")
            }
            await observer.stop()

            for worker in workers { worker.cancel() }
            for transport in successors { await transport.shutdown() }
            await predecessor.shutdown()
        }
    }

    private func initiate(range: Range<Int>, on channel: HandoffChannel<Int>, into expected: inout Set<String>) async throws {
        try await withThrowingTaskGroup(of: String.self) { group in
            for value in range {
                group.addTask { try await channel.initiate(value).id.rawValue }
            }
            for try await id in group { expected.insert(id) }
        }
    }
}

private func drain(_ channel: HandoffChannel<Int>, into claimed: Locked<[String: [String]]>, values: Locked<[Int]>, instance: String)
    async throws
{
    let batch = try await channel.complete()
    // Every claim of a race gets its verdict in time: none ends in claimOutcomeUnknown.
    #expect(batch.interruption == nil, "\(instance): \(String(describing: batch.interruption))")
    claimed.withLock { claimed in
        for handoff in batch.handoffs { claimed[handoff.id.rawValue, default: []].append(instance) }
    }
    values.withLock { $0 += batch.handoffs.map(\.state) }
}

/// A value shared between tasks of a test.
final class Locked<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>
    init(_ value: Value) { mutex = Mutex(value) }
    func withLock<R>(_ body: (inout Value) throws -> R) rethrows -> R { try mutex.withLock { try body(&$0) } }
}
