import Foundation
import Handoff

/// What the driver of a ``ClaimStateMachine`` does after an event: publish, tell a watcher, answer a waiting claim,
/// schedule a restore. The machine decides; the driver (`HandoffRouter`, over MQTT) performs, in the order given.
package enum ClaimAction: Sendable {
    /// Tell the watcher of `label` that handoffs are available (a ``HandoffNotice/available(_:)``).
    case offer(HandoffLabel)
    /// Publish a claim of round `key` with purpose `already-merged`, which nobody merges (docs/PROTOCOL.md §5 "Broker
    /// crashes", §9.6, §9.7, §10.6); `roundMAC` is what a signed claim binds to.
    case claimAlreadyMerged(HandoffLabel, key: String, roundMAC: String?, cause: ClearCause)
    /// Answer the claim waiting under `token`: won (`true`), lost (`false`) or failed.
    case answerClaim(token: UInt64, Result<Bool, any Error>)
    /// The retained copy of round `key` was removed by something that is not a claim: after a random delay, ask
    /// ``ClaimStateMachine/restoreIsDue(_:_:payload:)`` and, if it is, publish `payload` again with `handoff-restore-by`.
    case scheduleRestore(HandoffLabel, key: String, payload: Data, cause: String)
    /// A round was cleared again after ``ClaimStateMachine/maximumRestores`` restores: it is not restored again (log it).
    case restoreLimitReached(HandoffLabel, key: String, cause: String)
    /// A clear that is not a claim, on a round with nothing to restore here (log it).
    case nothingToRestore(HandoffLabel, key: String, cause: String)
    /// An unreadable message on a round's topic: store it as a dead letter, then (`claim`) claim it `dead-letter`, and
    /// tell the watcher (a ``HandoffNotice/rejected(_:)``).
    case deadLetterRejected(HandoffLabel, key: String, payload: Data, reason: HandoffRejection.Reason, detail: String, claim: Bool)
    /// An unreadable message left in place (a newer format, a key this participant does not hold): tell the watcher.
    case leaveRejected(HandoffLabel, key: String, reason: HandoffRejection.Reason, detail: String)
    /// An unreadable checkpoint of an instance that released nothing: ignored, its owner writes again (log it).
    case ignoreUnreadableCheckpoint(HandoffLabel, instance: String, reason: HandoffRejection.Reason)
    /// A claim of this participant whose verdict it can no longer learn: dead-letter the handoff `claim-outcome-unknown`.
    case deadLetterOutcomeUnknown(Entry, detail: String)
    /// The payloads held for labels nobody here watches were dropped to stay within the bound (log it).
    case droppedTrackedLabels(limit: Int)
    /// An instance's status released its checkpoints of `labels` labels (log it).
    case releasedCheckpoints(instance: String, through: Int, online: Bool, labels: Int)

    package typealias Entry = ClaimStateMachine.Entry

    /// Why an `already-merged` claim is published.
    package enum ClearCause: Sendable, Hashable, CustomStringConvertible {
        /// A handoff merged here before came back (a broker crash lost its clear), or a stale restore.
        case mergedBefore
        /// A released checkpoint whose owner's handoff of the label was seen: the handoff replaces it (§9.6).
        case replacedByHandoff
        /// This participant's own restore of a checkpoint round decided meanwhile (§10.6).
        case staleCheckpointRestore
        /// A checkpoint written after the one merged here: a late write of its fenced owner (§9.7).
        case lateCheckpointWrite

        package var description: String {
            switch self {
            case .mergedBefore: "Clearing a handoff that was merged here before and came back"
            case .replacedByHandoff: "Clearing a checkpoint replaced by its owner's handoff"
            case .staleCheckpointRestore: "Clearing a stale restore of a checkpoint"
            case .lateCheckpointWrite: "Clearing a checkpoint written after the one merged here"
            }
        }
    }
}
