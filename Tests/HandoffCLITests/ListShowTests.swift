import Foundation
import Handoff
import HandoffMQTT
import MosquittoClient
import Testing

@Suite("handoff list and show", .timeLimit(.minutes(1)))
struct ListShowTests {
    @Test(
        "list: handoffs, checkpoints held and released with their instance and incarnation, dead letters; --json; --label; a non-canonical level is reported"
    )
    func list() async throws {
        try await withFixture { fixture in
            let counter = try HandoffLabel("counter")
            let odd = try HandoffLabel("a/b é")
            let waitingHandoff = envelope(counter, json: #"{"count":42}"#, vsn: 2)
            let other = envelope(odd, json: "7")
            try await fixture.retain(fixture.topics.handoff(counter, id: waitingHandoff.id.rawValue), waitingHandoff.encoded())
            try await fixture.retain(fixture.topics.handoff(odd, id: other.id.rawValue), other.encoded())
            // Two checkpoints: one of a live instance (held), one of a dead one (released).
            let held = envelope(counter, json: "40", instance: "alive-1", incarnation: 3)
            let released = envelope(counter, json: "41", instance: "dead-1", incarnation: 1)
            try await fixture.retain(fixture.topics.instance("alive-1"), status("alive-1", incarnation: 3, state: "online", released: 2))
            try await fixture.retain(fixture.topics.instance("dead-1"), status("dead-1", incarnation: 1, state: "dead", released: 1))
            try await fixture.retain(fixture.topics.checkpoint(counter, instance: "alive-1"), held.encoded())
            try await fixture.retain(fixture.topics.checkpoint(counter, instance: "dead-1"), released.encoded())
            let deadTopic = fixture.topics.deadLetter(counter, id: "bad-1")
            try await fixture.retain(
                deadTopic, Data("garbage".utf8), properties: deadLetterProperties("malformed", detail: "no header line", topic: "x"))
            // Not a canonical encoding (lower-case hex): a tool that decodes levels refuses it.
            try await fixture.retain("\(fixture.topics.prefix)/handoffs/a%2fb/id-1", waitingHandoff.encoded())

            let listed = try await handoff(["list", "--json"], environment: fixture.environment)
            #expect(listed.status == 0, "\(listed)")
            let object = try #require(try listed.json() as? [String: Any])
            let handoffs = try #require(object["handoffs"] as? [[String: Any]])
            #expect(Set(handoffs.compactMap { $0["label"] as? String }) == ["counter", "a/b é"])
            let first = try #require(handoffs.first { $0["label"] as? String == "counter" })
            #expect(first["id"] as? String == waitingHandoff.id.rawValue)
            #expect(first["vsn"] as? Int == 2)
            #expect(first["size"] as? Int == waitingHandoff.encoded().count)
            #expect((first["origin"] as? [String: Any])?["instance"] as? String == "predecessor-1")
            let checkpoints = try #require(object["checkpoints"] as? [[String: Any]])
            #expect(checkpoints.count == 2)
            let alive = try #require(checkpoints.first { $0["instance"] as? String == "alive-1" })
            #expect(alive["incarnation"] as? Int == 3)
            #expect((alive["checkpoint"] as? [String: Any])?["released"] as? Bool == false)
            let dead = try #require(checkpoints.first { $0["instance"] as? String == "dead-1" })
            #expect((dead["checkpoint"] as? [String: Any])?["released"] as? Bool == true)
            #expect((dead["checkpoint"] as? [String: Any])?["instanceState"] as? String == "dead")
            let letters = try #require(object["deadLetters"] as? [[String: Any]])
            #expect(letters.count == 1)
            #expect((letters.first?["deadLetter"] as? [String: Any])?["reason"] as? String == "malformed")
            let unreadable = try #require(object["unreadableTopics"] as? [[String: String]])
            #expect(unreadable.first?["topic"]?.hasSuffix("/handoffs/a%2fb/id-1") == true)
            #expect(listed.stderr.contains("not a canonical encoding"))

            let text = try await handoff(["list", "--label", "counter"], environment: fixture.environment)
            #expect(text.status == 0, "\(text)")
            #expect(text.lines.contains("HANDOFFS WAITING (1)"))
            #expect(
                text.lines.contains {
                    $0.contains(waitingHandoff.id.rawValue) && $0.contains("predecessor-1 (pod-7, pid 41)") && $0.contains(" 2 ")
                })
            #expect(text.lines.contains { $0.contains("alive-1") && $0.contains("held (online)") })
            #expect(text.lines.contains { $0.contains("dead-1") && $0.contains("released (dead)") })
            #expect(text.lines.contains("DEAD LETTERS (1)"))
            #expect(!text.stdout.contains("a/b é"))
            print("handoff list --label counter\n\(text.stdout)")

            let empty = try await handoff(["list", "--label", "nobody-uses-this"], environment: fixture.environment)
            #expect(empty.status == 0)
            #expect(empty.lines == ["HANDOFFS WAITING (0)", "CHECKPOINTS (0)", "DEAD LETTERS (0)"])
        }
    }

    @Test("show: header and JSON state pretty-printed, integrity verified; a tampered one fails; an unknown one is an error")
    func show() async throws {
        try await withFixture { fixture in
            let label = try HandoffLabel("counter")
            let good = envelope(label, json: #"{"count":42,"total":99}"#, vsn: 2)
            try await fixture.retain(fixture.topics.handoff(label, id: good.id.rawValue), good.encoded())
            let shown = try await handoff(["show", "counter", good.id.rawValue], environment: fixture.environment)
            #expect(shown.status == 0, "\(shown)")
            #expect(shown.lines.first == "handoff \(fixture.topics.handoff(label, id: good.id.rawValue))")
            #expect(shown.stdout.contains(#""sha256" : "\#(good.sha256)""#))
            #expect(shown.stdout.contains("integrity:  verified"))
            #expect(shown.stdout.contains(#"    "count" : 42,"#))
            print("handoff show\n\(shown.stdout)")

            // The same header, other data: the SHA-256 no longer matches.
            let badID = HandoffID.random()
            var moved = good
            moved.id = badID
            var payload = moved.encoded()
            payload[payload.count - 2] = UInt8(ascii: "7")
            try await fixture.retain(fixture.topics.handoff(label, id: badID.rawValue), payload)
            let failed = try await handoff(["show", "counter", badID.rawValue], environment: fixture.environment)
            #expect(failed.isCleanFailure(), "\(failed)")
            #expect(failed.stderr.contains("integrity-failure"))
            #expect(failed.stdout.contains("integrity:  FAILED: integrity-failure"))

            let unknown = try await handoff(["show", "no-such-label", "x1"], environment: fixture.environment)
            #expect(unknown.isCleanFailure(), "\(unknown)")
            #expect(unknown.stderr.contains("nothing stored for 'no-such-label'/x1"))
        }
    }
}
