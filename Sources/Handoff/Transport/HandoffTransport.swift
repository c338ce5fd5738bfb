/// What a transport reports while a label is watched.
public enum HandoffNotice: Sendable, Hashable {
    /// Handoffs are waiting for the label (already waiting when watched, or newly arrived): call complete.
    case available(HandoffLabel)
    /// A message on the label's handoff location could not be read as an envelope; it was dead-lettered.
    case rejected(HandoffRejection)
}

/// Where handoffs wait: the store that dying processes write to and successors claim from.
///
/// ``LocalHandoffTransport`` keeps them in one process; other modules implement it over a broker. A transport
/// is one participant: it has one ``origin`` and watches labels on that participant's behalf.
///
/// Semantics every implementation keeps:
/// - A handoff is offered (``pending(_:)``, ``HandoffNotice/available(_:)``) to every watcher of its label
///   except the participant whose `origin.instance` initiated it.
/// - Of all participants claiming one handoff, exactly one gets `true` from ``claim(_:timeout:)``; once claimed
///   (or dead-lettered) a handoff is no longer pending for anyone.
/// - Nothing is dropped silently: a handoff that cannot be accepted goes to the dead letters.
/// - A watch lasts until ``unwatch(_:)``, another ``watch(_:)`` of the label, or the end of the participant,
///   even if its stream is dropped; ``pending(_:)`` works while the label is watched.
/// - A handoff this participant won is merged by its caller, given back with ``release(_:timeout:)``, or
///   dead-lettered; never dropped. One won after its caller stopped waiting (a cancelled or timed-out claim) is
///   offered again by ``pending(_:)``, and given back by the transport itself when the watch ends.
public protocol HandoffTransport: Sendable {
    /// This participant's identity, stamped as the origin of the envelopes it initiates. Envelopes whose
    /// origin.instance equals origin.instance are never offered to it (a process never claims its own handoff).
    var origin: HandoffOrigin { get }
    /// Starts watching `label` and returns its notices. Waiting handoffs are reported with `.available`.
    /// Watching a watched label again finishes the previous stream and returns a new one.
    func watch(_ label: HandoffLabel) async throws -> AsyncStream<HandoffNotice>
    /// Stops watching; finishes the stream. Waiting handoffs stay where they are.
    func unwatch(_ label: HandoffLabel) async throws
    /// The handoffs currently waiting for a watched label that nobody has claimed, excluding this participant's
    /// own, ordered by (createdAt, id). Throws `HandoffError.notSubscribed` for an unwatched label.
    func pending(_ label: HandoffLabel) async throws -> [HandoffEnvelope]
    /// Tries to claim a waiting handoff. `true`: this participant is its one owner and must merge it.
    /// `false`: another participant owns it. Throws `HandoffError.claimOutcomeUnknown` when it cannot tell.
    func claim(_ envelope: HandoffEnvelope, timeout: Duration) async throws -> Bool
    /// Gives back a handoff this participant won (``claim(_:timeout:)`` returned `true`) and will not merge: it
    /// is waiting again, as it was received, for any participant (this one included, if it still watches).
    func release(_ envelope: HandoffEnvelope, timeout: Duration) async throws
    /// Stores `envelope` as a waiting handoff; returns once the store has acknowledged it.
    func initiate(_ envelope: HandoffEnvelope, timeout: Duration) async throws
    /// Moves a waiting handoff that this participant cannot accept to the dead letters with the reason,
    /// and takes it out of the waiting handoffs (a claim that nobody merges, but nothing is lost).
    func deadLetter(
        _ envelope: HandoffEnvelope,
        reason: HandoffRejection.Reason,
        detail: String,
        timeout: Duration
    ) async throws
    /// The dead letters stored for `label`.
    func deadLetters(_ label: HandoffLabel, timeout: Duration) async throws -> [DeadLetter]
}

extension HandoffEnvelope {
    /// The order in which handoffs are listed and merged: ascending `createdAt`, then `id`.
    public static func precedes(_ lhs: HandoffEnvelope, _ rhs: HandoffEnvelope) -> Bool {
        if lhs.createdAt != rhs.createdAt { return lhs.createdAt < rhs.createdAt }
        return lhs.id.rawValue < rhs.id.rawValue
    }
}
