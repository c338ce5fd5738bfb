import Foundation
import Handoff
import HandoffClaims
import Logging
import MosquittoClient

/// Keyed reading and signed claims (docs/PROTOCOL.md §10.4, §10.5), and the repair of a waiting handoff whose retained
/// copy a clear that is not a claim removed (§10.6).
extension HandoffRouter {
    /// The longest random delay before a restore, so that usually one participant restores.
    static let restoreJitterMilliseconds = 100

    /// The user properties of a claim by this participant: signed when it is keyed and the round's envelope was signed.
    func claimProperties(topic: String, purpose: String, roundMAC: String?) -> MQTTPublishProperties {
        var properties = [
            MQTTUserProperty(HandoffProperty.claimBy, origin.instance),
            MQTTUserProperty(HandoffProperty.claimPurpose, purpose),
        ]
        if let keys = options.keys, let roundMAC {
            let signature = keys.claimSignature(topic: topic, claimBy: origin.instance, purpose: purpose, roundMAC: roundMAC)
            properties.append(MQTTUserProperty(HandoffProperty.claimSignature, signature))
        }
        return MQTTPublishProperties(userProperties: properties)
    }

    /// Whether another instance's claim of this participant's own checkpoint of `label` counts: always unkeyed; keyed,
    /// only if it is signed for one of the checkpoints this participant wrote recently (a forged claim must not fence it).
    func verifiesClaimOfOwnCheckpoint(label: HandoffLabel, topic: String, claimer: String, properties: MQTTPublishProperties) -> Bool {
        guard let keys = options.keys else { return true }
        let macs = ownCheckpointMACs.withLock { $0[label.topicLevel] ?? [] }
        let signature = properties.userProperty(HandoffProperty.claimSignature)
        let purpose = properties.userProperty(HandoffProperty.claimPurpose)
        return macs.contains { keys.verifiesClaim(signature, topic: topic, claimBy: claimer, purpose: purpose, roundMAC: $0) }
    }

    /// Remembers the `signature.mac` of a checkpoint this participant wrote (the last few per label).
    func wroteCheckpoint(_ label: HandoffLabel, mac: String?) {
        guard let mac else { return }
        ownCheckpointMACs.withLock { macs in
            var recent = macs[label.topicLevel] ?? []
            recent.append(mac)
            if recent.count > 8 { recent.removeFirst(recent.count - 8) }
            macs[label.topicLevel] = recent
        }
    }

    static func restoreMetadata(_ label: HandoffLabel, _ key: String, _ cause: String) -> Logger.Metadata {
        ["handoff.label": "\(label)", "handoff.id": "\(topicLevel(ofKey: key))", "handoff.cause": "\(cause)"]
    }

    /// Restores round `key` after a clear that is not a claim (``ClaimAction/scheduleRestore(_:key:payload:cause:)``):
    /// publishes the round's payload again as received, after a random delay, unless a restore or a verdict comes first
    /// (docs/PROTOCOL.md §10.6).
    func restore(label: HandoffLabel, key: String, payload: Data, cause: String) {
        let metadata = Self.restoreMetadata(label, key, cause)
        logger.warning("A waiting handoff was cleared by a message that is not a claim; restoring it", metadata: metadata)
        let (client, topic) = (self.client, roundTopic(label, key))
        let properties = MQTTPublishProperties(
            userProperties: [MQTTUserProperty(HandoffProperty.restoreBy, origin.instance)],
            messageExpiry: options.handoffExpiry, contentType: Self.contentType
        )
        Task { [self] in
            try? await Task.sleep(for: .milliseconds(Int.random(in: 0..<Self.restoreJitterMilliseconds)))
            guard state.withLock({ $0.machine.restoreIsDue(label, key, payload: payload) }) else { return }
            do {
                try await client.publish(topic, payload: payload, qos: .atLeastOnce, retain: true, properties: properties)
            } catch {
                logger.warning("Could not restore a waiting handoff", metadata: metadata.merging(["handoff.error": "\(error)"]) { $1 })
            }
        }
    }
}
