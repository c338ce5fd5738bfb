/// A state that merges with another of its kind without losing either: a join (a state-based CRDT).
///
/// `merged(with:)` MUST be
/// - commutative: `a.merged(with: b) == b.merged(with: a)`,
/// - associative: `a.merged(with: b).merged(with: c) == a.merged(with: b.merged(with: c))`,
/// - idempotent: `a.merged(with: a) == a`.
///
/// Then the outcome of merging handoffs does not depend on their order, on how they were grouped, or on one
/// being merged twice, which is what makes ``MergeableStrategy`` safe whatever happens in between.
///
/// A plain `Int` counter is not mergeable: addition is commutative and associative but not idempotent
/// (`5 + 5 != 5`), so a handoff merged twice would be counted twice. Use ``GCounter`` or ``PNCounter``
/// (per-replica counts merged by maximum), or merge a plain counter with a strategy that adds each claimed
/// handoff exactly once (see ``HandoffMergeStrategy``).
///
/// Ready-made: `Set` (union), `Dictionary` with mergeable values (key-wise), `Optional` of a mergeable
/// (`nil` merges to the other), ``GCounter``, ``PNCounter``, ``MaxValue`` and ``MinValue``.
///
/// The protocol does not refine `Sendable` (Swift does not let `Set` conform conditionally on its elements
/// being `Sendable`); the strategy and channel that use it require `Sendable` themselves.
public protocol HandoffMergeable {
    /// This value joined with `other`; commutative, associative and idempotent.
    func merged(with other: Self) -> Self
}

extension Set: HandoffMergeable {
    /// The union.
    public func merged(with other: Set<Element>) -> Set<Element> {
        union(other)
    }
}

extension Dictionary: HandoffMergeable where Value: HandoffMergeable {
    /// Every key of both; values under a key present in both are merged.
    public func merged(with other: [Key: Value]) -> [Key: Value] {
        merging(other) { $0.merged(with: $1) }
    }
}

extension Optional: HandoffMergeable where Wrapped: HandoffMergeable {
    /// `nil` merged with anything is that thing; two values are merged.
    public func merged(with other: Wrapped?) -> Wrapped? {
        switch (self, other) {
        case (let lhs?, let rhs?): return lhs.merged(with: rhs)
        case (let lhs?, nil): return lhs
        case (nil, let rhs): return rhs
        }
    }
}
