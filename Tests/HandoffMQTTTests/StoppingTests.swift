import Foundation
import Handoff
import HandoffTestKit
import HandoffTestSupport
import MosquittoClient
import MosquittoTestKit
import Testing

@testable import HandoffMQTT

/// Successors that stop in the middle of claiming: every handoff they won is merged, given back or dead-lettered,
/// never dropped (docs/PROTOCOL.md §5, "Stopping"). Against the repository's durable broker configuration.
@Suite("Successors stopped mid-claim lose nothing", .serialized, .timeLimit(.minutes(4)))
struct StoppingTests {
    static let handoffCount = 1_000

    /// How a successor is stopped.
    enum Stop: CaseIterable, CustomStringConvertible {
        /// The task running `complete()` is cancelled, then the label unwatched and the transport shut down.
        case cancelComplete
        /// The consumer of `handoffs()` is cancelled, then the transport shut down.
        case cancelStream
        /// The transport is shut down while `complete()` is claiming.
        case shutDownTransport

        var description: String {
            switch self {
            case .cancelComplete: "complete() cancelled"
            case .cancelStream: "handoffs() cancelled"
            case .shutDownTransport: "transport shut down mid-claim"
            }
        }
    }

    @Test("Successors stopped one after another while claiming 1,000 handoffs: each is merged once or dead-lettered")
    func stoppedWhileClaiming() async throws {
        try await withMosquittoBroker { broker in
            let configuration = MQTTConfiguration(host: broker.host, port: broker.plainPort)
            let options = MQTTHandoffTransport.Options(prefix: "stop-\(UUID().uuidString.prefix(8))")
            let label = try HandoffLabel("stopping")
            let predecessor = try await MQTTHandoffTransport.connect(configuration: configuration, options: options)
            let sender = HandoffChannel<Int>(label: label, transport: predecessor, timeout: .seconds(60))
            var expected: Set<String> = []
            try await withThrowingTaskGroup(of: String.self) { group in
                for value in 0..<Self.handoffCount {
                    group.addTask { try await sender.initiate(value).id.rawValue }
                }
                for try await id in group { expected.insert(id) }
            }

            let merges = Locked<[String: Int]>([:])  // handoff id -> times merged
            let record = { @Sendable (handoffs: [ClaimedHandoff<Int>]) in
                merges.withLock { merges in
                    for handoff in handoffs { merges[handoff.id.rawValue, default: 0] += 1 }
                }
            }
            // Successors that stop after claiming for a while, each in one of the three ways, in turn.
            var stops: [String] = []
            for round in 0..<9 {
                let stop = Stop.allCases[round % Stop.allCases.count]
                let successor = try await MQTTHandoffTransport.connect(configuration: configuration, options: options)
                let channel = HandoffChannel<Int>(label: label, transport: successor, timeout: .seconds(30))
                let before = merges.withLock { $0.count }
                let worker: Task<Void, any Error>
                switch stop {
                case .cancelComplete, .shutDownTransport:
                    let notices = try await channel.subscribe()
                    worker = Task {
                        // complete() returns what it won even when cancelled or cut short: record every batch.
                        record(try await channel.complete().handoffs)
                        for await notice in notices where !Task.isCancelled {
                            guard case .available = notice else { continue }
                            record(try await channel.complete().handoffs)
                        }
                    }
                case .cancelStream:
                    worker = Task {
                        for try await handoff in channel.handoffs() { record([handoff]) }
                    }
                }
                // Stop it in the middle of claiming: once it has taken a few dozen handoffs out of the waiting ones
                // (the durable broker saves its store after every clear, so claims take a while), at a random moment.
                // complete() reports its handoffs when its batch ends, handoffs() one by one; complete()'s channel has
                // subscribed already (watch returns once the waiting handoffs are known).
                let waitingAtStart = (try? await successor.pending(label).count) ?? 0
                _ = await eventually(upTo: .seconds(10)) {
                    if merges.withLock({ $0.count }) - before >= 30 { return true }
                    guard stop != .cancelStream, let waiting = try? await successor.pending(label).count else { return false }
                    return waiting <= max(waitingAtStart - 30, 0)
                }
                try await Task.sleep(for: .milliseconds(Int.random(in: 0...200)))
                switch stop {
                case .cancelComplete:
                    worker.cancel()
                    _ = await worker.result
                    try await channel.unsubscribe()
                    await successor.shutdown()
                case .cancelStream:
                    worker.cancel()
                    _ = await worker.result
                    await successor.shutdown()
                case .shutDownTransport:
                    let settlement = await successor.shutdown()
                    #expect(
                        settlement.unstored.isEmpty, "\(stop): \(settlement.unstored.count) handoffs neither given back nor dead-lettered")
                    worker.cancel()
                    _ = await worker.result
                }
                stops.append("\(stop): merged \(merges.withLock { $0.count } - before)")
            }

            // A last successor takes over whatever is still waiting, given back ones included.
            let last = try await MQTTHandoffTransport.connect(configuration: configuration, options: options)
            let drain = HandoffChannel<Int>(label: label, transport: last, timeout: .seconds(10))
            _ = try await drain.subscribe()
            let letters = Locked<Set<String>>([])
            let settled = await eventually(upTo: .seconds(90)) {
                let batch = (try? await drain.complete()) ?? HandoffBatch()
                record(batch.handoffs)
                guard (try? await last.pending(label))?.isEmpty == true else { return false }
                try? await last.sync(timeout: .seconds(10))
                let dead = (try? await last.deadLetters(label, timeout: .seconds(10))) ?? []
                letters.withLock { $0 = Set(dead.map(\.id)) }
                let merged = merges.withLock { Set($0.keys) }
                return merged.union(letters.withLock { $0 }).isSuperset(of: expected)
            }
            let merged = merges.withLock { $0 }
            let dead = letters.withLock { $0 }
            let lost = expected.subtracting(merged.keys).subtracting(dead)
            print("stopped successors: \(stops.joined(separator: "; ")); last successor: the rest; dead letters: \(dead.count)")
            #expect(settled, "\(lost.count) handoffs neither merged nor dead-lettered: \(lost.prefix(5))")
            #expect(lost.isEmpty)
            let twice = merged.filter { $0.value > 1 }
            #expect(twice.isEmpty, "\(twice.count) handoffs merged more than once: \(twice.prefix(5))")
            #expect(Set(merged.keys).isSubset(of: expected))
            // Every successor got its claims' verdicts before it stopped: none needed a claim-outcome-unknown.
            #expect(dead.isEmpty, "dead letters: \(dead.prefix(5))")

            await last.shutdown()
            await predecessor.shutdown()
        }
    }

    @Test("A successor whose broker session expired while it was away sees the waiting handoffs again after the reconnect")
    func sessionLostReadsWaitingHandoffsAgain() async throws {
        try await withMosquittoBroker { broker in
            let options = MQTTHandoffTransport.Options(
                prefix: "lost-\(UUID().uuidString.prefix(8))", sessionExpiry: .seconds(1), willDelay: .seconds(1))
            let label = try HandoffLabel("session-lost")
            let predecessor = try await MQTTHandoffTransport.connect(
                configuration: MQTTConfiguration(host: broker.host, port: broker.plainPort), options: options)
            let envelope = try await HandoffChannel<Int>(label: label, transport: predecessor).initiate(3)
            let proxy = try await TCPProxy.start(forwardingTo: broker.plainPort)
            defer { proxy.stop() }
            var configuration = MQTTConfiguration(host: broker.host, port: proxy.port)
            configuration.reconnect = .init(initialDelay: .seconds(1), maximumDelay: .seconds(1))
            let successor = try await MQTTHandoffTransport.connect(configuration: configuration, options: options)
            _ = try await successor.watch(label)
            #expect(try await successor.pending(label).map(\.id) == [envelope.id])

            // Away for longer than the session expiry: the broker forgets the session (and its subscriptions).
            await proxy.refuseNewConnections()
            await proxy.cutAllConnections()
            try await Task.sleep(for: .seconds(3))
            #expect(!successor.client.isConnected)
            await proxy.acceptNewConnections()
            #expect(await eventually(upTo: .seconds(10)) { successor.client.isConnected })
            // The reconnect's own work (forgetting the lost session, subscribing again) is done on its event task.
            let seenAgain = await eventually(upTo: .seconds(10)) {
                try? await successor.sync(timeout: .seconds(2))
                return (try? await successor.pending(label).map(\.id)) == [envelope.id]
            }
            #expect(seenAgain, "the waiting handoff was forgotten with the lost session")
            let channel = HandoffChannel<Int>(label: label, transport: successor)
            #expect(try await channel.complete().handoffs.map(\.state) == [3])
            await successor.shutdown()
            await predecessor.shutdown()
        }
    }

    @Test("A claim cut short whose verdict names this participant is given back when the label is unwatched")
    func wonAfterTheCallerLeft() async throws {
        try await withMosquittoBroker { broker in
            let configuration = MQTTConfiguration(host: broker.host, port: broker.plainPort)
            let options = MQTTHandoffTransport.Options(prefix: "won-\(UUID().uuidString.prefix(8))")
            let label = try HandoffLabel("won")
            let predecessor = try await MQTTHandoffTransport.connect(configuration: configuration, options: options)
            let observer = try await RoundObserver.start(configuration: configuration, prefix: options.prefix)
            let envelope = try await HandoffChannel<Int>(label: label, transport: predecessor).initiate(7)
            // The successor talks to the broker through a proxy that can hold its traffic back.
            let proxy = try await TCPProxy.start(forwardingTo: broker.plainPort)
            defer { proxy.stop() }
            let successor = try await MQTTHandoffTransport.connect(
                configuration: MQTTConfiguration(host: broker.host, port: proxy.port), options: options)
            _ = try await successor.watch(label)
            let waiting = try #require(try await successor.pending(label).first)

            // The claim goes out, but the verdict is held back past the claim's time limit: its caller gives up.
            await proxy.pause()
            await #expect(throws: HandoffError.self) { try await successor.claim(waiting, timeout: .milliseconds(300)) }
            await proxy.resume()
            try await successor.sync(timeout: .seconds(10))
            // The verdict came after all: won, not merged, and offered again.
            #expect(await observer.winner(label, envelope.id.rawValue, within: .seconds(5)) == successor.origin.instance)
            await observer.stop()
            #expect(try await successor.pending(label).map(\.id) == [envelope.id], "the won handoff is offered again")

            try await successor.unwatch(label)
            // It is waiting again, verbatim, for another participant.
            let other = try await MQTTHandoffTransport.connect(configuration: configuration, options: options)
            let taker = HandoffChannel<Int>(label: label, transport: other)
            _ = try await taker.subscribe()
            let batch = try await taker.complete()
            #expect(batch.handoffs.map(\.state) == [7])
            #expect(batch.handoffs.map(\.id) == [envelope.id])
            await other.shutdown()
            await successor.shutdown()
            await predecessor.shutdown()
        }
    }
}
