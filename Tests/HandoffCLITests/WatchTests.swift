import Foundation
import Handoff
import HandoffMQTT
import MosquittoClient
import MosquittoTestKit
import Testing

@Suite("handoff watch", .timeLimit(.minutes(1)))
struct WatchTests {
    @Test(
        "watch: a handoff waiting at start, one opened live, the verdict of two racing successors, the losing claim, a dead letter; SIGTERM ends it with 0"
    )
    func watchRounds() async throws {
        try await withFixture { fixture in
            let label = try HandoffLabel("watched/label")
            let early = envelope(label, json: "1")
            try await fixture.retain(fixture.topics.handoff(label, id: early.id.rawValue), early.encoded())
            let watch = try CLIProcess("handoff", ["watch", "--label", "watched/label", "--json"], environment: fixture.environment)
            #expect(await watch.waitFor { $0.stderr.contains("watching ") }, "\(watch.stderr)")

            // Two claims race for a live handoff (published in this order): the first is the verdict, the second loses.
            let successor = try await fixture.participant("successor-a")
            _ = try await successor.watch(label)
            let predecessor = try await fixture.participant("predecessor-x")
            let live = envelope(label, json: "2", instance: "predecessor-x")
            try await predecessor.initiate(live, timeout: .seconds(5))
            #expect(try await eventually { try await successor.pending(label).contains(live) })
            let raw = try await fixture.client()
            for claimer in ["successor-a", "successor-b"] {
                let claim = MQTTPublishProperties(userProperties: [
                    MQTTUserProperty("handoff-claim-by", claimer), MQTTUserProperty("handoff-claim-purpose", "merge"),
                ])
                try await raw.publish(
                    fixture.topics.handoff(label, id: live.id.rawValue), payload: Data(), qos: .atLeastOnce, retain: true, properties: claim
                )
            }
            await raw.shutdown()
            // successor-a's own router agrees: its claim is the verdict.
            #expect(try await successor.claim(live, timeout: .seconds(5)))
            // Garbage on a handoff topic: the successor dead-letters it.
            try await fixture.retain(fixture.topics.handoff(label, id: "garbage-1"), Data("not an envelope".utf8))

            func events() -> [[String: String]] {
                watch.stdoutLines.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: String] }
            }
            #expect(await watch.waitFor { _ in events().contains { $0["event"] == "dead-letter" } }, "\(watch.stdout)")
            #expect(
                await watch.waitFor { _ in
                    events().filter { $0["key"] == live.id.rawValue && ($0["event"] == "verdict" || $0["event"] == "claim") }.count >= 2
                })
            let seen = events()
            #expect(seen.contains { $0["event"] == "waiting" && $0["key"] == early.id.rawValue })
            #expect(seen.contains { $0["event"] == "opened" && $0["key"] == live.id.rawValue && $0["origin"] == "predecessor-x" })
            let verdict = try #require(seen.first { $0["event"] == "verdict" && $0["key"] == live.id.rawValue })
            #expect(verdict["winner"] == "successor-a")
            #expect(seen.contains { $0["event"] == "claim" && $0["key"] == live.id.rawValue && $0["claimer"] == "successor-b" })
            #expect(seen.contains { $0["event"] == "dead-letter" && $0["key"] == "garbage-1" && $0["reason"] == "malformed" })
            watch.send(SIGTERM)
            #expect(await watch.waitForExit() == 0)

            // The text form, for people.
            // (4 s: long enough for the handoff below to arrive on a loaded machine; the watch then ends on its own.)
            let text = try CLIProcess("handoff", ["watch", "--duration", "4"], environment: fixture.environment)
            #expect(await text.waitFor { $0.stderr.contains("watching ") })
            try await predecessor.initiate(envelope(label, json: "3", instance: "predecessor-x"), timeout: .seconds(5))
            #expect(await text.waitForExit() == 0)
            #expect(text.stdoutLines.contains { $0.contains("waiting") && $0.contains("watched/label/\(early.id)") })
            #expect(text.stdoutLines.contains { $0.contains("opened") && $0.contains("from predecessor-x (pod-7, pid 41)") })
            print("handoff watch\n\(text.stdout)")
            for transport in [successor, predecessor] { await transport.shutdown() }
        }
    }
}
