import struct Foundation.Date

/// A handoff this participant claimed and owns: its state, migrated to the current version, and where it
/// came from.
public struct ClaimedHandoff<State: Sendable>: Sendable {
    /// The handoff's identity.
    public var id: HandoffID
    /// The label it waited under.
    public var label: HandoffLabel
    /// The version it was written at (its `state` has been migrated to the current version).
    public var vsn: Int
    /// The state, at the current version.
    public var state: State
    /// When it was made.
    public var createdAt: Date
    /// Who made it.
    public var origin: HandoffOrigin
    /// Whether it is the last checkpoint of a process that died without handing off (``HandoffCheckpointing``),
    /// rather than a handoff: its state may be up to one checkpoint interval old.
    public var isCheckpoint: Bool
    /// The envelope as the transport received it (its payload verbatim): what a dead letter stores if the merge
    /// fails. `nil` for a claimed handoff made by hand.
    package var envelope: HandoffEnvelope?

    /// Creates a claimed handoff.
    public init(
        id: HandoffID, label: HandoffLabel, vsn: Int, state: State, createdAt: Date, origin: HandoffOrigin, isCheckpoint: Bool = false
    ) {
        self.id = id
        self.label = label
        self.vsn = vsn
        self.state = state
        self.createdAt = createdAt
        self.origin = origin
        self.isCheckpoint = isCheckpoint
    }

    /// The order in which handoffs are passed to merge strategies: ascending `createdAt`, then `id`.
    public static func precedes(_ lhs: ClaimedHandoff, _ rhs: ClaimedHandoff) -> Bool {
        if lhs.createdAt != rhs.createdAt { return lhs.createdAt < rhs.createdAt }
        return lhs.id.rawValue < rhs.id.rawValue
    }
}

extension ClaimedHandoff: Equatable where State: Equatable {}
extension ClaimedHandoff: Hashable where State: Hashable {}
