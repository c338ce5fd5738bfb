import Foundation
import Handoff
import MosquittoClient

/// Checkpoints and instance statuses (docs/PROTOCOL.md §9): a checkpoint of another instance is held while that
/// instance lives; once the instance's status releases it (its Will, or a birth that repeats an earlier release), it
/// is a waiting handoff like any other, claimed by the rule of §5 under the key `@{instance}`.
extension HandoffRouter {
    /// What the log says when a checkpoint is cleared because its owner's handoff replaces it (§9.6).
    static let replacedByHandoff = "Clearing a checkpoint replaced by its owner's handoff"

    /// A message on `{prefix}/checkpoints/{label}/{instance}`.
    func routeCheckpoint(label: HandoffLabel, instance: String, message: MQTTMessage) {
        let key = "@" + instance
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
        let envelope: HandoffEnvelope
        do {
            envelope = try HandoffEnvelope.readCheckpoint(
                payload, topicLabel: label, topicInstance: instance, keys: options.keys, maximumSize: options.maximumPayloadSize
            )
        } catch {
            rejectCheckpoint(label: label, instance: instance, payload: payload, reason: error.reason, detail: error.detail)
            return
        }
        guard let incarnation = envelope.incarnation else { return }
        if let restoredBy = message.properties.userProperty(HandoffProperty.restoreBy) {
            let unchanged = state.withLock { state in
                state.modifyWatched(label.topicLevel) { Self.restoresOpenRound(&$0, key, payload: payload) } ?? false
            }
            guard !unchanged else { return }
            if restoredBy == origin.instance, !message.retain {
                // This participant's own restore of a round decided meanwhile: a stale restore (docs/PROTOCOL.md §10.6).
                state.withLock { state in
                    state.modifyWatched(label.topicLevel) { $0.openRounds[key] = Round(payload: payload, mac: envelope.signatureMAC) }
                }
                clearResurrected(label: label, id: key, mac: envelope.signatureMAC, why: "Clearing a stale restore of a checkpoint")
                return
            }
        }
        enum Outcome { case hold, offer(AsyncStream<HandoffNotice>.Continuation?), clear(String) }
        let outcome = state.withLock { state -> Outcome in
            let released = incarnation <= state.releasedThrough[instance, default: 0]
            if state.watched[label.topicLevel]?.isWatched == false { boundTracking(&state, adding: payload.count) }
            return state.modifyWatched(label.topicLevel) { watched -> Outcome in
                let previous = watched.verdicts[key]
                watched.verdicts[key] = nil
                watched.openRounds[key] = Round(payload: payload, mac: envelope.signatureMAC)
                var entry = Entry(key: key, envelope: envelope, payload: payload)
                if message.properties.userProperty(HandoffProperty.restoreBy) != nil { entry.claimableAt = .now + Self.restoreGrace }
                if previous?.merged(by: origin.instance) ?? false {
                    // A checkpoint written after the one merged here (a late write of its fenced owner): the state it
                    // adds was the dead owner's, not to be merged twice.
                    return .clear("Clearing a checkpoint written after the one merged here")
                }
                if watched.handedOffBy.contains(instance) {
                    guard released else {
                        watched.held[key] = entry
                        return .hold
                    }
                    return .clear(Self.replacedByHandoff)
                }
                guard released else {
                    watched.held[key] = entry
                    // A claim of this participant still in flight for the round before keeps its (marked) entry, so
                    // that stopping waits for that claim's verdict.
                    if watched.pending[key]?.claiming != true { watched.pending[key] = nil }
                    return .hold
                }
                watched.held[key] = nil
                watched.replacePending(key, with: entry)
                return .offer(watched.continuation)
            } ?? .hold
        }
        switch outcome {
        case .hold: break
        case .offer(let notices): notices?.yield(.available(label))
        case .clear(let why): clearResurrected(label: label, id: key, mac: envelope.signatureMAC, why: why)
        }
    }

    /// An unreadable message on a checkpoint topic: ignored while its instance lives (it writes again), dead-lettered
    /// once its instance has released its checkpoints.
    private func rejectCheckpoint(label: HandoffLabel, instance: String, payload: Data, reason: HandoffRejection.Reason, detail: String) {
        let released = state.withLock { $0.releasedThrough[instance, default: 0] > 0 }
        guard released else {
            logger.debug(
                "Ignored an unreadable checkpoint of a live instance",
                metadata: ["handoff.label": "\(label)", "handoff.instance": "\(instance)", "handoff.reason": "\(reason.rawValue)"]
            )
            return
        }
        let key = "@" + instance
        reject(label: label, id: key, payload: payload, reason: reason, detail: detail, roundOpen: isRoundOpen(label, key))
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
        let key = "@" + instance
        let (offers, clears) = state.withLock { state -> ([(HandoffLabel, AsyncStream<HandoffNotice>.Continuation?)], [(HandoffLabel, String?)]) in
            if status.incarnation >= state.lastStatus[instance]?.incarnation ?? 0 { state.lastStatus[instance] = status }
            if status.state == .online { state.lastHeard[instance] = .now }
            guard through > state.releasedThrough[instance, default: 0] else { return ([], []) }
            state.releasedThrough[instance] = through
            var offers: [(HandoffLabel, AsyncStream<HandoffNotice>.Continuation?)] = []
            var clears: [(HandoffLabel, String?)] = []
            for level in state.watched.keys {
                state.modifyWatched(level) { watched in
                    guard let held = watched.held[key], let incarnation = held.envelope.incarnation, incarnation <= through else { return }
                    watched.held[key] = nil
                    if watched.handedOffBy.contains(instance) {
                        clears.append((watched.label, held.envelope.signatureMAC))
                    } else {
                        watched.replacePending(key, with: held)
                        offers.append((watched.label, watched.continuation))
                    }
                }
            }
            return (offers, clears)
        }
        if !offers.isEmpty || !clears.isEmpty {
            logger.info(
                "An instance released its checkpoints",
                metadata: [
                    "handoff.instance": "\(instance)", "handoff.incarnation": "\(through)",
                    "handoff.state": "\(status.state.rawValue)", "handoff.labels": "\(offers.count + clears.count)",
                ]
            )
        }
        for (label, notices) in offers { notices?.yield(.available(label)) }
        for (label, mac) in clears { clearResurrected(label: label, id: key, mac: mac, why: Self.replacedByHandoff) }
    }
}

extension HandoffRouter {
    /// The instances whose checkpoints this participant holds, whose latest status says they are online, and that it
    /// has not heard from (birth or heartbeat) for `lease`: their Will may have been lost (mosquitto 2.0 keeps
    /// pending delayed Wills in memory only, so a broker restart loses them). Returns the death notice to publish
    /// for each, the one their Will would have been.
    func silentInstances(lease: Duration) -> [InstanceStatus] {
        state.withLock { state in
            let now = ContinuousClock.now
            var holders: Set<String> = []
            for watched in state.watched.values {
                for key in watched.held.keys { holders.insert(String(key.dropFirst())) }
            }
            return holders.compactMap { instance -> InstanceStatus? in
                guard let status = state.lastStatus[instance], status.state == .online,
                    status.incarnation > state.releasedThrough[instance, default: 0],
                    let heard = state.lastHeard[instance], heard.duration(to: now) > lease
                else { return nil }
                return .dead(instance, incarnation: status.incarnation)
            }
        }
    }
}
