/// What one ``HandoffChannel/complete()`` took over, refused and left alone.
public struct HandoffBatch<State: Sendable>: Sendable {
    /// The handoffs this participant claimed and owns, in ascending (createdAt, id) order: merge them.
    public var handoffs: [ClaimedHandoff<State>]
    /// The handoffs it refused (undecodable, failed migration or validation, other content type); each was
    /// moved to the dead letters, never merged.
    public var rejected: [HandoffRejection]
    /// The handoffs written at a version it cannot read; they were left waiting, untouched, for a participant
    /// that can. Each is reported once per channel.
    public var deferred: [HandoffRejection]
    /// Set when a transport operation failed part-way (for example a claim whose outcome is unknown): the
    /// batch holds what was done before, and the handoffs not yet processed are still waiting, so call
    /// `complete()` again later. `nil` when every pending handoff was processed.
    public var interruption: (any Error)?

    /// Creates a batch.
    public init(
        handoffs: [ClaimedHandoff<State>] = [],
        rejected: [HandoffRejection] = [],
        deferred: [HandoffRejection] = [],
        interruption: (any Error)? = nil
    ) {
        self.handoffs = handoffs
        self.rejected = rejected
        self.deferred = deferred
        self.interruption = interruption
    }

    /// The claimed handoffs merged into `current` with `strategy`.
    public func merged(into current: State, using strategy: some HandoffMergeStrategy<State>) throws -> State {
        try strategy.merge(current, with: handoffs)
    }
}
