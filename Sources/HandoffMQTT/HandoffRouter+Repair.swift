import Foundation
import Handoff
import Logging
import MosquittoClient

/// Keyed reading and signed claims (docs/PROTOCOL.md §10.4, §10.5), and the repair of a waiting handoff whose retained
/// copy a clear that is not a claim removed (§10.6).
extension HandoffRouter {
    /// How long a round opened by a restore waits before this participant claims it for merging: time for a stale
    /// restore to be claimed `already-merged` by its restorer or by the earlier winner.
    static let restoreGrace: Duration = .milliseconds(250)
    /// The longest random delay before a restore, so that usually one participant restores.
    static let restoreJitterMilliseconds = 100
    /// Restores of one round by one participant, at most.
    static let maximumRestores = 3

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

    /// Whether a restore (a payload with `handoff-restore-by`) changes nothing: it repeats, byte for byte, the payload
    /// of a round that is open here. It then also stands for this participant's own restore, if one is due.
    static func restoresOpenRound(_ watched: inout Watched, _ key: String, payload: Data) -> Bool {
        guard var round = watched.openRounds[key], round.payload == nil || round.payload == payload else { return false }
        round.restoreDue = false
        watched.openRounds[key] = round
        return true
    }

    /// The retained copy of round `key` was removed (or replaced) by something that is not a claim: publishes the
    /// round's payload again as received, after a random delay, unless a restore or a verdict comes first
    /// (docs/PROTOCOL.md §10.6).
    func restoreAfterClear(label: HandoffLabel, id key: String, why: String) {
        enum Plan { case none, limit, restore(Data) }
        let plan = state.withLock { state -> Plan in
            state.modifyWatched(label.topicLevel) { watched -> Plan in
                // A held checkpoint is repaired by its live writer, which alone knows its newest one.
                guard var round = watched.openRounds[key], let payload = round.payload, !round.restoreDue, watched.held[key] == nil else {
                    return .none
                }
                guard round.restores < Self.maximumRestores else { return .limit }
                round.restoreDue = true
                watched.openRounds[key] = round
                return .restore(payload)
            } ?? .none
        }
        let metadata: Logger.Metadata = ["handoff.label": "\(label)", "handoff.id": "\(Self.topicLevel(ofKey: key))", "handoff.cause": "\(why)"]
        switch plan {
        case .none:
            logger.debug("A zero-length message on a handoff topic is not a claim; nothing to restore", metadata: metadata)
        case .limit:
            logger.error(
                "A waiting handoff keeps being cleared by messages that are not claims; not restoring it again (do the participants' key sets agree?)",
                metadata: metadata
            )
        case .restore(let payload):
            logger.warning("A waiting handoff was cleared by a message that is not a claim; restoring it", metadata: metadata)
            let (client, topic) = (self.client, roundTopic(label, key))
            let properties = MQTTPublishProperties(
                userProperties: [MQTTUserProperty(HandoffProperty.restoreBy, origin.instance)],
                messageExpiryInterval: options.handoffExpiry, contentType: Self.contentType
            )
            Task { [self] in
                try? await Task.sleep(for: .milliseconds(Int.random(in: 0..<Self.restoreJitterMilliseconds)))
                let due = state.withLock { state in
                    state.modifyWatched(label.topicLevel) { watched -> Bool in
                        guard var round = watched.openRounds[key], round.restoreDue, round.payload == payload else { return false }
                        round.restoreDue = false
                        round.restores += 1
                        watched.openRounds[key] = round
                        return true
                    } ?? false
                }
                guard due else { return }
                do {
                    try await client.publish(topic, payload: payload, qos: .atLeastOnce, retain: true, properties: properties)
                } catch {
                    logger.warning("Could not restore a waiting handoff", metadata: metadata.merging(["handoff.error": "\(error)"]) { $1 })
                }
            }
        }
    }
}
