import Foundation
import Handoff
import HandoffClaims
import MosquittoClient

/// Claims decided by a ``HandoffClaimArbiter`` instead of the broker's order (docs/PROTOCOL.md §11). The router still
/// sees every handoff and clear on MQTT (for notices, dead letters and the tools); only the decision moves to the store.
extension HandoffRouter {
    /// Whether round `key` is decided by the arbiter: handoffs are; checkpoints (`@instance`) keep the broker's order.
    func key(isArbitrated key: String) -> Bool { !key.hasPrefix("@") }

    /// A handoff the arbiter's store lists as waiting, read like a retained message on its topic (§4, §10.4).
    func offerStored(label: HandoffLabel, id: String, payload: Data) {
        routeHandoff(label: label, id: id, payload: payload, properties: MQTTPublishProperties(), retained: true)
    }

    /// Takes the handoff in the store: won if and only if the store gave this participant the payload. The winner then
    /// publishes its clear on MQTT (the retained copy goes, and other clients and tools see the verdict); a loser that
    /// found the handoff retained clears that copy, which its broker node may keep after the winner's clear went through
    /// another node (purpose `already-merged`: someone has it). A loser that saw it live publishes nothing: a race of K
    /// successors costs one clear, not K.
    func claimThroughArbiter(_ envelope: HandoffEnvelope, _ arbiter: any HandoffClaimArbiter) async throws -> Bool {
        let label = envelope.label
        let id = envelope.id.rawValue
        let start = try state.withLock { try $0.machine.startArbitratedClaim(label, id) }
        guard case .take(let entry) = start else {
            if case .decided(let won) = start { return won }
            return false
        }
        let outcome: HandoffArbitration
        do {
            outcome = try await arbiter.take(prefix: topics.prefix, label: label, id: id, for: origin.instance)
        } catch let error as HandoffError where error.code == .claimOutcomeUnknown {
            let detail = error.detail
            // The store may have given it to this participant: keep it as a dead letter rather than lose it (§5).
            _ = state.withLock { $0.machine.arbitrated(label, id, won: nil, claimed: entry) }
            try? await deadLetter(
                label: label, id: id, payload: entry.payload, reason: .claimOutcomeUnknown, detail: detail, claim: false,
                timeout: options.settleTimeout
            )
            throw HandoffError.claimOutcomeUnknown(label: label, id: envelope.id, detail: detail + "; its payload was dead-lettered")
        } catch {
            // Nothing was decided: it is still waiting, and may be claimed again.
            state.withLock { $0.machine.arbitrationFailed(label, id) }
            throw error
        }
        let topic = roundTopic(label, id)
        let won = outcome != .lost
        let mac = state.withLock { $0.machine.arbitrated(label, id, won: won, claimed: entry) }
        guard won || entry.wasRetained else { return false }
        let properties = claimProperties(topic: topic, purpose: won ? "merge" : "already-merged", roundMAC: mac)
        let client = self.client
        Task { try? await client.publish(topic, payload: Data(), qos: .atLeastOnce, retain: true, properties: properties) }
        return won
    }
}
