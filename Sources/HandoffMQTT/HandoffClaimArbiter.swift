import Foundation
import Handoff

/// Decides the one winner of each handoff in place of the broker's order (docs/PROTOCOL.md §11), for brokers that do
/// not give every subscriber one order per topic: clustered brokers (EMQX, VerneMQ, HiveMQ, ejabberd).
///
/// With an arbiter, a handoff is also stored in the arbiter's store before it is published, successors list what waits
/// from the store (a clustered broker may not deliver a retained message published through another node), and a claim
/// is the store's atomic take: exactly one claimer gets the payload. MQTT still carries every handoff and the winner's
/// clear, in the wire format of §4 and §5, so tools and other clients still see them.
public protocol HandoffClaimArbiter: Sendable {
    /// Stores a waiting handoff (its payload verbatim) under `prefix`, before it is published.
    func store(prefix: String, label: HandoffLabel, id: String, payload: Data) async throws
    /// The handoffs of `label` waiting under `prefix`: their ids and payloads.
    func waiting(prefix: String, label: HandoffLabel) async throws -> [(id: String, payload: Data)]
    /// Takes handoff `id` for `instance` if it is still waiting, or if the store never had it and nobody took it before
    /// (a handoff published without the store): exactly one caller gets ``HandoffArbitration/won(payload:)``.
    ///
    /// - Throws: ``HandoffError/claimOutcomeUnknown(label:id:detail:)`` when the store may have decided without the
    ///   answer reaching this participant; ``HandoffError/transportUnavailable(_:underlying:)`` when nothing was decided.
    func take(prefix: String, label: HandoffLabel, id: String, for instance: String) async throws -> HandoffArbitration
    /// Takes handoff `id` out of the waiting ones without anyone taking it: it was dead-lettered, the dead letter keeps it
    /// (a copy requeued later is taken like a handoff the store never had).
    func remove(prefix: String, label: HandoffLabel, id: String) async throws
    /// Who took handoff `id`, while the store remembers it (for diagnostics and tests).
    func winner(prefix: String, label: HandoffLabel, id: String) async throws -> String?
}

/// What the store decided on one claim.
public enum HandoffArbitration: Sendable, Equatable {
    /// This participant took it: the payload as stored (empty when the store never had it: the claimer's copy counts).
    case won(payload: Data)
    /// It was not waiting (any more): another participant took it, or it was never stored.
    case lost
}
