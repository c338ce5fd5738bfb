import Foundation
import Handoff
import HandoffMQTT
import MosquittoClient
import MosquittoTestKit
import Testing

@Suite("handoff dead-letters, requeue, purge", .timeLimit(.minutes(1)))
struct DeadLetterTests {
    @Test(
        "dead-letters lists a library participant's rejection with its reason; requeue makes it a new round a successor merges; purge asks first"
    )
    func deadLettersRequeuePurge() async throws {
        try await withFixture { fixture in
            let label = try HandoffLabel("orders")
            let predecessor = try await fixture.participant("predecessor-1")
            let successor = try await fixture.participant("successor-1")
            _ = try await successor.watch(label)
            let rejected = envelope(label, json: #"{"open":3}"#, vsn: 4, instance: "predecessor-1")
            try await predecessor.initiate(rejected, timeout: .seconds(5))
            #expect(try await eventually { try await successor.pending(label).contains(rejected) })
            try await successor.deadLetter(rejected, reason: .validationFailed, detail: "open must be even", timeout: .seconds(5))
            await successor.shutdown()

            let listed = try await handoff(["dead-letters", "--label", "orders"], environment: fixture.environment)
            #expect(listed.status == 0, "\(listed)")
            #expect(listed.lines.first == "DEAD LETTERS (1)")
            #expect(listed.stdout.contains("orders/\(rejected.id)  validation-failed"))
            #expect(listed.stdout.contains("open must be even"))
            print("handoff dead-letters\n\(listed.stdout)")
            let json = try await handoff(["dead-letters", "--json"], environment: fixture.environment)
            let letters = try #require(try json.json() as? [[String: Any]])
            #expect((letters.first?["deadLetter"] as? [String: Any])?["rejectedBy"] as? String == "successor-1")

            // Requeued: waiting again, a new round that a successor claims and gets the same bytes.
            let requeued = try await handoff(["requeue", "orders", rejected.id.rawValue], environment: fixture.environment)
            #expect(requeued.status == 0, "\(requeued)")
            #expect(requeued.stdout.hasPrefix("requeued 'orders'/\(rejected.id)"))
            let next = try await fixture.participant("successor-2")
            _ = try await next.watch(label)
            let waiting = try #require(try await next.pending(label).first { $0.id == rejected.id })
            #expect(waiting == rejected)
            #expect(try await next.claim(waiting, timeout: .seconds(5)))
            let after = try await handoff(["dead-letters", "--label", "orders"], environment: fixture.environment)
            #expect(after.lines == ["DEAD LETTERS (0)"])
            let again = try await handoff(["requeue", "orders", rejected.id.rawValue], environment: fixture.environment)
            #expect(again.isCleanFailure(), "\(again)")
            #expect(again.stderr.contains("no dead letter 'orders'/\(rejected.id)"))

            // Not requeued while a handoff of that id waits, nor when the payload is not an envelope.
            let twin = envelope(label, json: "1", instance: "predecessor-1")
            try await fixture.retain(fixture.topics.handoff(label, id: twin.id.rawValue), twin.encoded())
            try await fixture.retain(
                fixture.topics.deadLetter(label, id: twin.id.rawValue), twin.encoded(),
                properties: deadLetterProperties("claim-outcome-unknown", detail: "stopped", topic: "t"))
            let waitingAlready = try await handoff(["requeue", "orders", twin.id.rawValue], environment: fixture.environment)
            #expect(waitingAlready.isCleanFailure(), "\(waitingAlready)")
            #expect(waitingAlready.stderr.contains("is waiting already"))
            try await fixture.retain(
                fixture.topics.deadLetter(label, id: "junk-1"), Data("junk".utf8),
                properties: deadLetterProperties("malformed", detail: "no header line", topic: "t"))
            let junk = try await handoff(["requeue", "orders", "junk-1"], environment: fixture.environment)
            #expect(junk.isCleanFailure(), "\(junk)")
            #expect(junk.stderr.contains("not a readable envelope"))

            // purge: asks; "n" (or no answer) deletes nothing; --yes deletes.
            let declined = try await handoff(["purge", "orders", "junk-1"], environment: fixture.environment, input: "n\n")
            #expect(declined.status == 1, "\(declined)")
            #expect(declined.stderr.contains("Delete the dead letter 'orders'/junk-1 (malformed) for good? [y/N]"))
            #expect(declined.stderr.contains("not confirmed"))
            let confirmed = try await handoff(["purge", "orders", "junk-1"], environment: fixture.environment, input: "y\n")
            #expect(confirmed.status == 0, "\(confirmed)")
            #expect(confirmed.stdout.contains("purged 'orders'/junk-1 (malformed"))
            let unknown = try await handoff(["purge", "orders", "junk-1", "--yes"], environment: fixture.environment)
            #expect(unknown.isCleanFailure(), "\(unknown)")
            let all = try await handoff(["purge", "--all", "--yes"], environment: fixture.environment)
            #expect(all.status == 0, "\(all)")
            #expect(all.stdout.contains("purged 'orders'/\(twin.id) (claim-outcome-unknown"))
            let none = try await handoff(["dead-letters"], environment: fixture.environment)
            #expect(none.lines == ["DEAD LETTERS (0)"])
            let usage = try await handoff(["purge", "orders"], environment: fixture.environment)
            #expect(usage.status == 64, "\(usage)")
            for transport in [predecessor, next] { await transport.shutdown() }
        }
    }
}
