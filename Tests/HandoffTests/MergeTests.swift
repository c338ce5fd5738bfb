import Foundation
import Handoff
import HandoffTestSupport
import Testing

func claimed<S: Sendable>(_ state: S, at seconds: Double, id: String) -> ClaimedHandoff<S> {
    // Force-try is fine: the ids are valid literals.
    ClaimedHandoff(
        id: try! HandoffID(id), label: try! HandoffLabel("merge"), vsn: 1, state: state,
        createdAt: Date(timeIntervalSince1970: seconds), origin: HandoffOrigin(instance: id)
    )
}

@Suite("Merge strategies")
struct MergeStrategyTests {
    let handoffs = [claimed(1, at: 10, id: "a"), claimed(2, at: 20, id: "b"), claimed(3, at: 20, id: "c")]

    @Test("takeNewest takes the newest handoff's state, ties by id, and keeps the current one when none")
    func takeNewest() throws {
        #expect(try HandoffBatch(handoffs: handoffs).merged(into: 0, using: .takeNewest()) == 3)
        #expect(try HandoffBatch(handoffs: handoffs.reversed()).merged(into: 0, using: .takeNewest()) == 3)
        #expect(try HandoffBatch(handoffs: [handoffs[0]]).merged(into: 0, using: .takeNewest()) == 1)
        #expect(try HandoffBatch<Int>().merged(into: 42, using: .takeNewest()) == 42)
    }

    @Test("keepCurrent keeps the current state")
    func keepCurrent() throws {
        #expect(try HandoffBatch(handoffs: handoffs).merged(into: 42, using: .keepCurrent()) == 42)
        #expect(try KeepCurrentStrategy<Int>().merge(7, with: []) == 7)
    }

    @Test("fold applies the closure in order")
    func fold() throws {
        let order = try HandoffBatch(handoffs: handoffs).merged(
            into: 0,
            using: FoldStrategy { current, handoff in
                current * 10 + handoff.state
            })
        #expect(order == 123)
        // A plain Int counter summed once per claimed handoff (the static sugar needs an explicit @Sendable).
        #expect(try HandoffBatch(handoffs: handoffs).merged(into: 10, using: .fold { @Sendable in $0 + $1.state }) == 16)
        struct Odd: Error {}
        #expect(throws: Odd.self) {
            try FoldStrategy<Int> { current, handoff in
                if handoff.state == 2 { throw Odd() }
                return current + handoff.state
            }.merge(0, with: handoffs)
        }
    }

    @Test("mergeable merges every handoff into the current state")
    func mergeable() throws {
        var mine = GCounter()
        mine.increment(by: 5, replica: "me")
        let theirs = (1...3).map { index -> ClaimedHandoff<GCounter> in
            var counter = GCounter()
            counter.increment(by: UInt64(index), replica: "r\(index)")
            counter.increment(by: 2, replica: "me")  // an older view of my own count
            return claimed(counter, at: Double(index), id: "h\(index)")
        }
        let merged = try HandoffBatch(handoffs: theirs).merged(into: mine, using: .mergeable())
        #expect(merged.value == 5 + 1 + 2 + 3)
        #expect(try MergeableStrategy<GCounter>().merge(merged, with: theirs) == merged)
        let sets = [claimed(Set([1, 2]), at: 1, id: "x"), claimed(Set([2, 3]), at: 2, id: "y")]
        #expect(try HandoffBatch(handoffs: sets).merged(into: [9], using: .mergeable()) == [1, 2, 3, 9])
    }

    /// A custom strategy, as in the documentation.
    struct SumCounts: HandoffMergeStrategy {
        func merge(_ current: Int, with handoffs: [ClaimedHandoff<Int>]) throws -> Int {
            handoffs.reduce(current) { $0 + $1.state }
        }
    }

    @Test("a custom strategy")
    func custom() throws {
        #expect(try HandoffBatch(handoffs: handoffs).merged(into: 0, using: SumCounts()) == 6)
    }
}

@Suite("Mergeable laws")
struct MergeableLawTests {
    /// All orderings of `values`.
    static func permutations<T>(_ values: [T]) -> [[T]] {
        guard values.count > 1 else { return [values] }
        return values.indices.flatMap { index -> [[T]] in
            var rest = values
            let head = rest.remove(at: index)
            return permutations(rest).map { [head] + $0 }
        }
    }

    /// Commutative, associative, idempotent over every pair and triple of `values` (with repetition), and
    /// folding every permutation gives one result.
    static func checkLaws<T: HandoffMergeable & Equatable>(_ values: [T], sourceLocation: SourceLocation = #_sourceLocation) {
        var failures = 0
        for a in values {
            if a.merged(with: a) != a { failures += 1 }
            for b in values {
                if a.merged(with: b) != b.merged(with: a) { failures += 1 }
                for c in values where a.merged(with: b).merged(with: c) != a.merged(with: b.merged(with: c)) {
                    failures += 1
                }
            }
        }
        let reference = values.dropFirst().reduce(values[0]) { $0.merged(with: $1) }
        let orderings = permutations(values)
        for ordering in orderings where ordering.dropFirst().reduce(ordering[0], { $0.merged(with: $1) }) != reference {
            failures += 1
        }
        #expect(failures == 0, "\(failures) law violations", sourceLocation: sourceLocation)
        #expect(orderings.count == (1...values.count).reduce(1, *), sourceLocation: sourceLocation)
    }

    static func counter(_ counts: [String: UInt64]) -> GCounter { GCounter(counts: counts) }

    @Test("Set")
    func set() {
        Self.checkLaws([Set<Int>(), [1], [1, 2], [2, 3], [1]])
    }

    @Test("GCounter")
    func gCounter() {
        Self.checkLaws([
            Self.counter([:]), Self.counter(["a": 1]), Self.counter(["a": 2, "b": 1]), Self.counter(["b": 3]),
            Self.counter(["a": 1]),
        ])
    }

    @Test("PNCounter")
    func pnCounter() {
        var a = PNCounter()
        a.increment(by: 3, replica: "a")
        var b = a
        b.decrement(by: 5, replica: "b")
        var c = PNCounter()
        c.decrement(by: 1, replica: "a")
        c.increment(by: 7, replica: "c")
        Self.checkLaws([PNCounter(), a, b, c, b])
        #expect(a.merged(with: b).merged(with: c).value == 3 + 7 - 5 - 1)
    }

    @Test("Dictionary of GCounters")
    func dictionary() {
        let values: [[String: GCounter]] = [
            [:], ["x": Self.counter(["a": 1])], ["x": Self.counter(["a": 2]), "y": Self.counter(["b": 1])],
            ["y": Self.counter(["b": 4, "c": 1])], ["x": Self.counter(["a": 1])],
        ]
        Self.checkLaws(values)
    }

    @Test("MaxValue, MinValue and Optional")
    func maxMin() {
        Self.checkLaws([MaxValue(3), MaxValue(1), MaxValue(7), MaxValue(3), MaxValue(-2)])
        Self.checkLaws([MinValue("b"), MinValue("a"), MinValue("c"), MinValue("a")])
        Self.checkLaws([MaxValue(3), nil, MaxValue(9), nil, MaxValue(3)] as [MaxValue<Int>?])
    }

    @Test("counters count, saturate and encode compactly")
    func counters() throws {
        var counter = GCounter()
        counter.increment(replica: "a")
        counter.increment(by: 4, replica: "b")
        counter.increment(by: 0, replica: "c")
        #expect(counter.value == 5)
        #expect(counter.counts == ["a": 1, "b": 4])
        counter.increment(by: .max, replica: "a")
        #expect(counter.value == .max)
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        #expect(String(decoding: try encoder.encode(GCounter(counts: ["a": 1, "b": 2])), as: UTF8.self) == #"{"a":1,"b":2}"#)
        #expect(try JSONDecoder().decode(GCounter.self, from: Data(#"{"a":1}"#.utf8)) == GCounter(counts: ["a": 1]))
        var pn = PNCounter()
        pn.decrement(by: 3, replica: "a")
        #expect(pn.value == -3)
        #expect(try JSONDecoder().decode(PNCounter.self, from: encoder.encode(pn)) == pn)
        #expect(String(decoding: try encoder.encode(MaxValue(5)), as: UTF8.self) == "5")
        #expect(try JSONDecoder().decode(MinValue<String>.self, from: Data(#""z""#.utf8)) == MinValue("z"))
    }
}
