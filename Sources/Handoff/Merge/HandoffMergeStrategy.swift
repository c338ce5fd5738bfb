/// How a successor folds the handoffs it claimed into its own state.
///
/// Handoffs are passed in a deterministic order: ascending `createdAt`, ties broken by `id`
/// (``ClaimedHandoff/precedes(_:_:)``); ``HandoffBatch`` is already in that order.
///
/// Choose a built-in: ``takeNewest``, ``keepCurrent``, ``fold(_:)`` or, for states that are
/// ``HandoffMergeable``, ``mergeable``. Or write your own: a plain `Int` counter is not mergeable (adding is not
/// idempotent: merging a handoff twice would count it twice), but adding each claimed handoff exactly once is
/// the right thing for a counter whose handoffs are claimed exactly once:
///
/// ```swift
/// struct SumCounts: HandoffMergeStrategy {
///     func merge(_ current: Int, with handoffs: [ClaimedHandoff<Int>]) throws -> Int {
///         handoffs.reduce(current) { $0 + $1.state }
///     }
/// }
/// // or, without a type: FoldStrategy { current, handoff in current + handoff.state }
/// ```
public protocol HandoffMergeStrategy<State>: Sendable {
    /// The state merged.
    associatedtype State: Sendable
    /// Merges `handoffs` (in ascending (createdAt, id) order) into `current`.
    func merge(_ current: State, with handoffs: [ClaimedHandoff<State>]) throws -> State
}

/// Takes the state of the newest handoff (latest `createdAt`, ties by the greatest `id`); keeps the current
/// state when there is none. Everything else is dropped.
public struct TakeNewestStrategy<State: Sendable>: HandoffMergeStrategy {
    /// Creates the strategy.
    public init() {}

    /// The newest handoff's state, or `current`.
    public func merge(_ current: State, with handoffs: [ClaimedHandoff<State>]) throws -> State {
        handoffs.max(by: ClaimedHandoff.precedes)?.state ?? current
    }
}

/// Keeps the current state and drops the handoffs (they were still claimed, so nobody else takes them).
public struct KeepCurrentStrategy<State: Sendable>: HandoffMergeStrategy {
    /// Creates the strategy.
    public init() {}

    /// `current`.
    public func merge(_ current: State, with handoffs: [ClaimedHandoff<State>]) throws -> State {
        current
    }
}

/// Applies a closure to the current state and each handoff in order, like `reduce`.
public struct FoldStrategy<State: Sendable>: HandoffMergeStrategy {
    /// The step: the state so far and the next handoff give the next state.
    public let body: @Sendable (State, ClaimedHandoff<State>) throws -> State

    /// Creates the strategy.
    public init(_ body: @escaping @Sendable (State, ClaimedHandoff<State>) throws -> State) {
        self.body = body
    }

    /// `handoffs.reduce(current, body)`.
    public func merge(_ current: State, with handoffs: [ClaimedHandoff<State>]) throws -> State {
        try handoffs.reduce(current, body)
    }
}

/// Merges every handoff's state into the current one with ``HandoffMergeable/merged(with:)``. The result
/// does not depend on the order, nor on a handoff being merged twice.
public struct MergeableStrategy<State: HandoffMergeable & Sendable>: HandoffMergeStrategy {
    /// Creates the strategy.
    public init() {}

    /// `current` merged with every handoff's state.
    public func merge(_ current: State, with handoffs: [ClaimedHandoff<State>]) throws -> State {
        handoffs.reduce(current) { $0.merged(with: $1.state) }
    }
}

extension HandoffMergeStrategy {
    /// The state of the newest handoff; the current state if none (``TakeNewestStrategy``).
    public static func takeNewest<S>() -> Self where Self == TakeNewestStrategy<S> {
        TakeNewestStrategy()
    }

    /// The current state; handoffs are dropped (``KeepCurrentStrategy``).
    public static func keepCurrent<S>() -> Self where Self == KeepCurrentStrategy<S> {
        KeepCurrentStrategy()
    }

    /// `body` applied to the current state and each handoff in order (``FoldStrategy``).
    ///
    /// Swift 6.3 does not infer `@Sendable` for a closure literal passed here, so mark it:
    /// `.fold { @Sendable current, handoff in current + handoff.state }`, or write
    /// `FoldStrategy { current, handoff in current + handoff.state }`, which needs no mark.
    public static func fold<S>(
        _ body: @escaping @Sendable (S, ClaimedHandoff<S>) throws -> S
    ) -> Self where Self == FoldStrategy<S> {
        FoldStrategy(body)
    }

    /// Every handoff merged into the current state with ``HandoffMergeable/merged(with:)``
    /// (``MergeableStrategy``).
    public static func mergeable<S>() -> Self where Self == MergeableStrategy<S> {
        MergeableStrategy()
    }
}
