import Foundation
import Handoff
import HandoffTestSupport
import MosquittoClient
import MosquittoTestKit
import Testing

@testable import HandoffMQTT

/// The rendezvous rank of docs/PROTOCOL.md §5, "Ranked claims" (the same vectors as interop/python's `claim_rank`).
@Suite("Ranked claims")
struct ClaimRankingTests {
    @Test("scores are SHA-256(id ‖ 0x00 ‖ instance); the highest ranks first; the origin and the dead are left out")
    func ranks() {
        #expect(
            ClaimCandidates.score(id: "id-1", instance: "a").map { String(format: "%02x", $0) }.joined()
                == "1805fe051d080538bb66ba904b351ccc75d7a0cf39ae3f093124b89bb5e56516"
        )
        func status(_ instance: String, _ incarnation: Int, online: Bool) -> Data {
            (online ? InstanceStatus.online(instance, incarnation: incarnation, released: 0) : .dead(instance, incarnation: incarnation))
                .encoded()
        }
        // For id-1 the order is b, c, a, d.
        var ranks: [String: Int] = [:]
        for own in ["a", "b", "c", "d"] {
            let candidates = ClaimCandidates(own: own)
            for other in ["a", "b", "c", "d"] { candidates.observe(instance: other, payload: status(other, 1, online: true)) }
            ranks[own] = candidates.rank(id: "id-1", origin: "p")
        }
        #expect(ranks == ["b": 0, "c": 1, "a": 2, "d": 3])

        let d = ClaimCandidates(own: "d")
        #expect(d.rank(id: "id-1", origin: "p") == 0, "no known peers: claims at once")
        for other in ["a", "b", "c"] { d.observe(instance: other, payload: status(other, 1, online: true)) }
        #expect(d.rank(id: "id-1", origin: "b") == 2, "the origin never claims its own handoff")
        d.observe(instance: "c", payload: status("c", 1, online: false))
        #expect(d.rank(id: "id-1", origin: "p") == 2, "a death notice removes a candidate")
        d.observe(instance: "c", payload: status("c", 1, online: true))
        #expect(d.rank(id: "id-1", origin: "p") == 2, "a birth of the same incarnation does not undo a death notice")
        d.observe(instance: "c", payload: status("c", 2, online: true))
        #expect(d.rank(id: "id-1", origin: "p") == 3, "a newer incarnation does")
        d.observe(instance: "a", payload: Data())
        #expect(d.rank(id: "id-1", origin: "p") == 2, "a removed status removes a candidate")
    }

    @Test("the delay per rank is capped, and off is off")
    func delays() {
        let ranking = MQTTHandoffTransport.ClaimRanking.rendezvous(step: .milliseconds(3), maximumSteps: 8)
        #expect(ranking.delay(forRank: 0) == .zero)
        #expect(ranking.delay(forRank: 2) == .milliseconds(6))
        #expect(ranking.delay(forRank: 30) == .milliseconds(24))
        #expect(MQTTHandoffTransport.ClaimRanking.off.delay(forRank: 5) == .zero)
        #expect(MQTTHandoffTransport.Options().claimRanking == .rendezvous())
    }
}

/// Ranked claims against a real mosquitto: a first-ranked instance that does not watch the label, and stopping during a wait.
@Suite("Ranked claims against a real mosquitto", .timeLimit(.minutes(2)))
struct RankedClaimIntegrationTests {
    /// An envelope of `predecessor` whose id ranks `order` (instance ids) in that order, first first.
    private func envelope(ranking order: [String], label: HandoffLabel, from predecessor: MQTTHandoffTransport) -> HandoffEnvelope {
        while true {
            let envelope = HandoffEnvelope(label: label, vsn: 1, origin: predecessor.origin, data: Data("1".utf8))
            let scores = order.map { ClaimCandidates.score(id: envelope.id.rawValue, instance: $0) }
            let sorted = zip(scores, order).sorted { ClaimCandidates.ranks($0.0, $0.1, above: $1.0, $1.1) }.map(\.1)
            if sorted == order { return envelope }
        }
    }

    @Test(
        "the first-ranked instance does not watch the label: the second claims after one step, alone, and wins; the third publishes nothing"
    )
    func firstRankedIdle() async throws {
        try await withMosquittoBroker { broker in
            let configuration = MQTTConfiguration(host: broker.host, port: broker.plainPort)
            let options = MQTTHandoffTransport.Options(
                prefix: "ranked-\(UUID().uuidString.prefix(8))", claimRanking: .rendezvous(step: .seconds(1)))
            let label = try HandoffLabel("ranked")
            let predecessor = try await MQTTHandoffTransport.connect(configuration: configuration, options: options)
            let idle = try await MQTTHandoffTransport.connect(configuration: configuration, options: options)
            let second = try await MQTTHandoffTransport.connect(configuration: configuration, options: options)
            let third = try await MQTTHandoffTransport.connect(configuration: configuration, options: options)
            let envelope = envelope(ranking: [idle, second, third].map(\.origin.instance), label: label, from: predecessor)
            try await predecessor.initiate(envelope, timeout: .seconds(5))
            _ = try await second.watch(label)
            _ = try await third.watch(label)
            // Every participant knows the others online (their births were read when each connected, or live since).
            #expect(await eventually { second.router.candidates.online().count == 3 && third.router.candidates.online().count == 3 })

            let observer = try MQTTClient(configuration: configuration)
            try await observer.connect()
            let claims = Locked<[String]>([])
            let messages = observer.messages()
            let topic = second.topics.handoff(label, id: envelope.id.rawValue)
            try await observer.subscribe(topic, options: MQTTSubscribeOptions(qos: .atLeastOnce))
            let listener = Task {
                for await message in messages where message.topic == topic && message.payload.isEmpty {
                    claims.withLock { $0.append(message.properties.userProperty("handoff-claim-by") ?? "") }
                }
            }
            defer { listener.cancel() }

            let clock = ContinuousClock()
            let start = clock.now
            async let secondWon = second.claim(envelope, timeout: .seconds(20))
            async let thirdWon = third.claim(envelope, timeout: .seconds(20))
            let (won2, won3) = try await (secondWon, thirdWon)
            let elapsed = start.duration(to: clock.now)
            #expect(won2 && !won3)
            #expect(elapsed >= .seconds(1), "rank 1 waits one step: \(elapsed)")
            try await Task.sleep(for: .milliseconds(400))
            #expect(claims.withLock { $0 } == [second.origin.instance], "only the second-ranked claimed")

            await observer.shutdown()
            for transport in [third, second, idle, predecessor] { await transport.shutdown() }
        }
    }

    @Test("unwatching during a ranked wait ends it without a claim: the handoff stays waiting for another successor")
    func stopDuringWait() async throws {
        try await withMosquittoBroker { broker in
            let configuration = MQTTConfiguration(host: broker.host, port: broker.plainPort)
            let options = MQTTHandoffTransport.Options(
                // A turn far beyond any scheduling delay of a loaded machine: only the unwatch can end the wait in time.
                prefix: "ranked-stop-\(UUID().uuidString.prefix(8))", claimRanking: .rendezvous(step: .seconds(30), maximumSteps: 1))
            let label = try HandoffLabel("ranked")
            let predecessor = try await MQTTHandoffTransport.connect(configuration: configuration, options: options)
            let idle = try await MQTTHandoffTransport.connect(configuration: configuration, options: options)
            let successor = try await MQTTHandoffTransport.connect(configuration: configuration, options: options)
            let envelope = envelope(ranking: [idle, successor].map(\.origin.instance), label: label, from: predecessor)
            try await predecessor.initiate(envelope, timeout: .seconds(5))
            _ = try await successor.watch(label)
            #expect(await eventually { successor.router.candidates.online().count == 2 })

            let clock = ContinuousClock()
            let start = clock.now
            let claim = Task { try await successor.claim(envelope, timeout: .seconds(90)) }
            // Unwatched only once the claim waits for its turn (its waiter is registered, nothing is published).
            #expect(await eventually { successor.router.state.withLock { !$0.waiters.isEmpty } })
            try await successor.unwatch(label)
            await #expect(throws: HandoffError.self) { try await claim.value }
            #expect(start.duration(to: clock.now) < .seconds(20), "the wait ended with the unwatch, not at its 30 s turn")

            // Nothing was published: a successor that watches now finds the handoff and takes it.
            await idle.shutdown()
            let late = try await MQTTHandoffTransport.connect(configuration: configuration, options: options)
            _ = try await late.watch(label)
            #expect(try await late.pending(label).map(\.id) == [envelope.id])
            #expect(try await late.claim(envelope, timeout: .seconds(5)))

            for transport in [late, successor, predecessor] { await transport.shutdown() }
        }
    }
}
