import Foundation
import Handoff
import HandoffClaims
import MosquittoClient

/// Checkpoints and instance statuses (docs/PROTOCOL.md §9): a checkpoint of another instance is held while that
/// instance lives; once the instance's status releases it (its Will, or a birth that repeats an earlier release), it
/// is a waiting handoff like any other, claimed by the rule of §5 under the key `@{instance}`.
extension HandoffRouter {
    /// A message on `{prefix}/checkpoints/{label}/{instance}`.
    func routeCheckpoint(label: HandoffLabel, instance: String, message: MQTTMessage) {
        let key = ClaimStateMachine.checkpointKey(instance)
        if message.payload.isEmpty {
            if instance == origin.instance {
                let claimer = message.properties.userProperty(HandoffProperty.claimBy).flatMap { $0.isEmpty ? nil : $0 }
                if let claimer, claimer != instance,
                    verifiesClaimOfOwnCheckpoint(label: label, topic: message.topic, claimer: claimer, properties: message.properties)
                {
                    // Someone else took this participant's checkpoint: it no longer owns the label's state.
                    ownershipLost.withLock { $0 }?(.checkpointClaimed(label, by: claimer))
                } else if claimer != instance {
                    // Cleared by something that is not a claim: the writer repairs its own checkpoint by writing it again
                    // (a restore by another participant could cross a newer checkpoint, docs/PROTOCOL.md §10.6).
                    ownCheckpointCleared.withLock { $0 }?(label)
                }
            }
            routeClaim(label: label, id: key, topic: message.topic, properties: message.properties)
            return
        }
        // This participant's own checkpoints are never claimed by it.
        guard instance != origin.instance else { return }
        let payload = message.payload
        do {
            let envelope = try HandoffEnvelope.readCheckpoint(
                payload, topicLabel: label, topicInstance: instance, keys: options.keys, maximumSize: options.maximumPayloadSize
            )
            let (restoredBy, retained) = (message.properties.userProperty(HandoffProperty.restoreBy), message.retain)
            handle {
                $0.checkpointSeen(
                    label, instance: instance, envelope: envelope, payload: payload, restoredBy: restoredBy, retained: retained, now: .now)
            }
        } catch {
            handle { $0.unreadableCheckpointSeen(label, instance: instance, payload: payload, reason: error.reason, detail: error.detail) }
        }
    }

    /// A message on `{prefix}/instances/{instance}`: a birth or a Will. Releases the checkpoints it releases.
    func routeStatus(instance: String, payload: Data) {
        candidates.observe(instance: instance, payload: payload)
        guard let status = InstanceStatus.decode(payload, on: instance) else { return }
        let through = status.releasedThrough
        guard instance != origin.instance else {
            if through > 0 { ownershipLost.withLock { $0 }?(.released(through: through, status: status)) }
            return
        }
        handle {
            $0.statusSeen(
                instance: instance, incarnation: status.incarnation, online: status.state == .online, releasedThrough: through, now: .now)
        }
    }
}

extension HandoffRouter {
    /// The instances whose checkpoints this participant holds, whose latest status says they are online, and that it
    /// has not heard from (birth or heartbeat) for `lease`: their Will may have been lost (mosquitto 2.0 keeps
    /// pending delayed Wills in memory only, so a broker restart loses them). Returns the death notice to publish
    /// for each, the one their Will would have been.
    func silentInstances(lease: Duration) -> [InstanceStatus] {
        state.withLock { $0.machine.silentInstances(lease: lease, now: .now) }.map { .dead($0.instance, incarnation: $0.incarnation) }
    }
}
