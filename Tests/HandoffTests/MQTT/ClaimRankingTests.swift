import Foundation
import Handoff
@testable import HandoffMQTT
import Testing

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
            (online ? InstanceStatus.online(instance, incarnation: incarnation, released: 0) : .dead(instance, incarnation: incarnation)).encoded()
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
