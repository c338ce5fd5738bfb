import EdgeGatewayKit
import Handoff
import Testing

/// The edge gateway's per-sensor record: what makes a redelivered reading count once, and a handoff merge safe.
@Suite("SensorStats")
struct SensorStatsTests {
    static func reading(_ seq: Int, _ value: Double = 1) -> Reading {
        Reading(sensor: "s", seq: seq, value: value, time: Double(seq))
    }

    @Test("a reading redelivered after it was counted is skipped; a gap is reported as missing")
    func duplicatesAndGaps() {
        var stats = SensorStats()
        let counted = [(1, 10.0), (2, 30), (2, 30), (1, 10), (5, 20)].map { stats.record(Self.reading($0, $1)) }
        #expect(counted == [true, true, false, false, true])
        #expect(stats.count == 3)
        #expect(stats.duplicates == 2)
        #expect(stats.missing == 2)
        #expect(stats.lastSeq == 5)
        #expect(stats.min == 10 && stats.max == 30 && stats.mean == 20)
        #expect(stats.lastSeen == 5)
    }

    @Test("merging keeps the record that has seen more of the stream: commutative, associative, idempotent")
    func mergeLaws() {
        var a = SensorStats()
        var b = SensorStats()
        var c = SensorStats()
        for seq in 1...3 { a.record(Self.reading(seq)) }
        for seq in 1...7 { b.record(Self.reading(seq)) }
        for seq in 1...5 { c.record(Self.reading(seq, 2)) }
        #expect(a.merged(with: b) == b)
        #expect(a.merged(with: b) == b.merged(with: a))
        #expect(a.merged(with: b).merged(with: c) == a.merged(with: b.merged(with: c)))
        #expect(b.merged(with: b) == b)

        let primary: GatewayState = ["s1": b, "s2": a]
        let standby: GatewayState = ["s2": c]
        #expect(standby.merged(with: primary) == ["s1": b, "s2": c])
        #expect(standby.merged(with: primary).merged(with: primary) == standby.merged(with: primary))
    }
}
