import Handoff

/// A stateful actor whose state survives its process: ``HandoffService`` takes over the handoffs left for its
/// label when it starts, and hands its state off when the process shuts down gracefully.
///
/// Adopting it is the whole job (the five steps of the Elixir original are the service's):
///
/// ```swift
/// actor Counter: HandoffParticipant {
///     nonisolated let handoffLabel: HandoffLabel
///     var handoffState = 0
///     static let handoffMergeStrategy = FoldStrategy<Int> { count, handoff in count + handoff.state }
///
///     init(label: HandoffLabel) { handoffLabel = label }
///     func increment() { handoffState += 1 }
/// }
/// ```
///
/// Merging runs inside the actor's isolation: the service reads ``handoffState``, merges the claimed handoffs with
/// ``handoffMergeStrategy`` and writes the result back without a suspension in between, so an update made by the
/// actor itself can never be overwritten by a merge (and vice versa).
///
/// The label is per instance, so one process can host any number of participants of one type (one per device,
/// per tenant, per shard), each with its own label.
public protocol HandoffParticipant: Actor {
    /// The state handed off. Its `Codable` form is what travels (JSON by default, see
    /// ``HandoffService/Configuration/codec``).
    associatedtype State: Codable & Sendable
    /// The type of ``handoffMergeStrategy``.
    associatedtype MergeStrategy: HandoffMergeStrategy<State>

    /// The label this participant's handoffs wait under. It must not change while the participant is hosted.
    nonisolated var handoffLabel: HandoffLabel { get }
    /// The live state: snapshotted at shutdown, merged into when handoffs arrive.
    var handoffState: State { get set }
    /// How claimed handoffs are merged into ``handoffState`` (see `HandoffMergeStrategy`: `FoldStrategy`,
    /// `TakeNewestStrategy`, `MergeableStrategy`, …).
    static var handoffMergeStrategy: MergeStrategy { get }
    /// The version of `State` written at shutdown (the original's `@vsn`); 1 by default.
    static var handoffVersion: Int { get }
    /// How older versions of `State` are read; `nil` (the default) reads ``handoffVersion`` only.
    /// Its `currentVersion` must equal ``handoffVersion``.
    static var handoffMigrations: HandoffMigrations<State>? { get }

    /// Checks a received state before it is merged; throwing moves the handoff to the dead letters with reason
    /// `validation-failed` (the original's "don't propagate bad state"). Accepts everything by default.
    static func validateHandoff(_ state: State) throws

    /// Called inside the actor's isolation right after claimed handoffs were merged into ``handoffState``
    /// (for example to start work that must wait for the predecessor's state). Does nothing by default.
    func didMergeHandoffs(_ handoffs: [ClaimedHandoff<State>])

    /// Called inside the actor's isolation when successors took this participant's state over while it still runs:
    /// its process was partitioned from the broker for longer than the death-detection delay, so its last
    /// checkpoint was released and merged elsewhere (see `HandoffCheckpointing`). The service stops checkpointing
    /// the label and will not hand it off at shutdown. The state here is no longer the one successors build on:
    /// stop acting on it (for example stop serving the label, or restart the process). Does nothing by default
    /// (the service logs it at error).
    func handoffOwnershipLost(_ fencing: HandoffFencing)

    /// The state to hand off, taken once at shutdown after merging has stopped; ``handoffState`` by default.
    /// Updates made after this call are not handed off: stop the participant's inputs before the
    /// ``HandoffService`` shuts down (place their services after it in the `ServiceGroup`).
    func stateForHandoff() -> State
}

extension HandoffParticipant {
    /// Version 1.
    public static var handoffVersion: Int { 1 }
    /// No migrations: only ``handoffVersion`` is readable.
    public static var handoffMigrations: HandoffMigrations<State>? { nil }
    /// Accepts every state.
    public static func validateHandoff(_ state: State) throws {}
    /// Does nothing.
    public func didMergeHandoffs(_ handoffs: [ClaimedHandoff<State>]) {}
    /// Does nothing.
    public func handoffOwnershipLost(_ fencing: HandoffFencing) {}
    /// ``handoffState``.
    public func stateForHandoff() -> State { handoffState }

    /// Merges `handoffs` into ``handoffState`` and calls ``didMergeHandoffs(_:)``, all in one isolated step.
    /// If the strategy throws, the state is left unchanged and the error is rethrown.
    func mergeClaimedHandoffs(_ handoffs: [ClaimedHandoff<State>]) throws {
        handoffState = try Self.handoffMergeStrategy.merge(handoffState, with: handoffs)
        didMergeHandoffs(handoffs)
    }
}
