import Foundation
import Handoff

/// The claim rule of docs/PROTOCOL.md §5 for one participant, without I/O: every round of every label it sees, what
/// it holds, and the claims it waits for.
///
/// The driver (over MQTT: `HandoffRouter`) feeds it what arrives, in the broker's order, and what its callers ask,
/// as plain values (labels, round keys, payloads, decoded envelopes, user-property values, instants); each event
/// returns what to do as ``ClaimAction``s, or a plain answer. It reads no clock and holds no continuation: claims
/// waiting for their verdict are tokens, answered by ``ClaimAction/answerClaim(token:_:)``.
///
/// - a non-empty message on a round's topic is a waiting handoff (a new round for that topic);
/// - a zero-length message there carrying `handoff-claim-by` is a claim; the FIRST claim seen after the handoff wins,
///   every later one loses; zero-length messages without that property are not claims (§10.6 restores the handoff).
///
/// Checkpoints (docs/PROTOCOL.md §9) follow the same rule once their instance's status releases them; until then
/// they are held. Rounds are kept by **key**: a handoff's id, or `@` + the instance for a checkpoint (`@` is not an
/// id character, so the two never collide).
package struct ClaimStateMachine: Sendable {
    /// The claim purposes whose verdict nobody merges (docs/PROTOCOL.md §5).
    package static let unmergedPurposes: Set<String> = ["dead-letter", "already-merged"]
    /// How long a round opened by a restore waits before this participant claims it for merging: time for a stale
    /// restore to be claimed `already-merged` by its restorer or by the earlier winner (docs/PROTOCOL.md §10.6).
    package static let restoreGrace: Duration = .milliseconds(250)
    /// Restores of one round by one participant, at most.
    package static let maximumRestores = 3

    /// This participant's instance id.
    package let instance: String
    /// The key set claims are verified with (docs/PROTOCOL.md §10.5); `nil`: unkeyed.
    package let keys: HandoffKeySet?
    /// Payload bytes held for labels only tracked, at most.
    package let trackedBytesLimit: Int

    var labels: [String: LabelRounds] = [:]
    /// The claims waiting for their verdict (or their ranked turn), by round.
    var claims: [RoundID: UInt64] = [:]
    var nextToken: UInt64 = 1
    /// Shut down: no label, no claim.
    package private(set) var isShutDown = false
    /// Shutting down: waiting for the verdicts of claims in flight; no new claim starts.
    var stopping = false
    /// Payload bytes held for labels only tracked, not watched (bounded by ``trackedBytesLimit``).
    var trackedBytes = 0
    /// The tracked labels' state was dropped to stay within the bound: watching a label that has no state here needs
    /// the retained messages again.
    var trackingIncomplete = false
    /// Per other instance: its checkpoints written at an incarnation up to this one are released.
    var releasedThrough: [String: Int] = [:]
    /// Per other instance: the incarnation of its latest status and whether it is online, and when this participant
    /// last heard from it (a birth or a heartbeat, or its own reconnect: it could not hear while disconnected).
    var lastStatus: [String: (incarnation: Int, online: Bool)] = [:]
    var lastHeard: [String: ContinuousClock.Instant] = [:]

    package init(instance: String, keys: HandoffKeySet? = nil, trackedBytesLimit: Int = 64 << 20) {
        self.instance = instance
        self.keys = keys
        self.trackedBytesLimit = trackedBytesLimit
    }

    /// The round key of a checkpoint of `instance`.
    package static func checkpointKey(_ instance: String) -> String { "@" + instance }

    /// The round key of `envelope`: a checkpoint (it has an incarnation, and its topic names its origin's instance) or a
    /// handoff (read from a handoff topic, where an incarnation is dropped).
    package static func key(of envelope: HandoffEnvelope) -> String {
        envelope.incarnation == nil ? envelope.id.rawValue : checkpointKey(envelope.origin.instance)
    }

    /// Whether round `key` is a checkpoint's.
    package static func isCheckpoint(_ key: String) -> Bool { key.hasPrefix("@") }

    /// The last topic level of round `key`: the handoff id, or the instance of a checkpoint.
    package static func topicLevel(ofKey key: String) -> String {
        isCheckpoint(key) ? String(key.dropFirst()) : key
    }

    /// Runs `body` on a label's rounds in place; `nil` when the label is not known.
    ///
    /// Copying the rounds out of the dictionary and writing them back would copy their dictionaries on every change
    /// (they are shared while two copies exist): a cost that grew with every verdict recorded.
    mutating func modify<R>(_ level: String, _ body: (inout LabelRounds) throws -> R) rethrows -> R? {
        guard let index = labels.index(forKey: level) else { return nil }
        return try body(&labels.values[index])
    }

    // MARK: - Watching and tracking

    /// What ``startWatching(_:)`` found.
    package struct WatchStart: Sendable, Equatable {
        /// Shut down: nothing is watched.
        package var shutDown = false
        /// Handoffs wait already (seen while the label was tracked, or won before): offer them.
        package var available = false
        /// The tracked labels' state was dropped: the retained messages must be read again.
        package var needsRetained = false
    }

    /// A caller watches `label` (again): what it has seen, and won, stays.
    package mutating func startWatching(_ label: HandoffLabel) -> WatchStart {
        guard !isShutDown else { return WatchStart(shutDown: true) }
        guard let index = labels.index(forKey: label.topicLevel) else {
            labels[label.topicLevel] = LabelRounds(label: label, isWatched: true)
            return WatchStart(needsRetained: trackingIncomplete)
        }
        let rounds = labels.values[index]
        if !rounds.isWatched { trackedBytes -= rounds.payloadBytes }
        labels.values[index].isWatched = true
        labels.values[index].stopping = false
        return WatchStart(available: !rounds.pending.isEmpty || !rounds.won.isEmpty)
    }

    /// The label of a topic level seen on the wildcard subscription, tracked from now on if nobody watches it; `nil`
    /// for a level that is not a label's canonical encoding (docs/PROTOCOL.md §3), which can be nobody's.
    package mutating func label(atLevel level: Substring) -> HandoffLabel? {
        if let label = labels[String(level)]?.label { return label }
        guard !isShutDown, let label = try? HandoffLabel(topicLevel: String(level)) else { return nil }
        labels[label.topicLevel] = LabelRounds(label: label, isWatched: false)
        return label
    }

    /// Whether a caller watches `label`.
    package func isWatched(_ label: HandoffLabel) -> Bool { labels[label.topicLevel]?.isWatched ?? false }

    /// Keeps the payloads held for tracked labels within the limit: over it, they are dropped, and a label watched
    /// later reads the retained messages again.
    mutating func boundTracking(adding bytes: Int, _ actions: inout [ClaimAction]) {
        trackedBytes += bytes
        guard trackedBytes > trackedBytesLimit else { return }
        var total = 0
        for rounds in labels.values where !rounds.isWatched { total += rounds.payloadBytes }
        trackedBytes = total
        guard total > trackedBytesLimit else { return }
        for level in Array(labels.keys) where !(labels[level]?.isWatched ?? true) {
            labels[level] = nil
        }
        trackedBytes = 0
        trackingIncomplete = true
        actions.append(.droppedTrackedLabels(limit: trackedBytesLimit))
    }

    /// The retained messages were read again (the wildcard subscribed again and synced): every label is tracked anew.
    package mutating func retainedReadAgain() {
        trackingIncomplete = false
    }

    /// `label` is being unwatched: no new claim starts for it, and its ranked waits end without a claim.
    package mutating func beginStopping(_ label: HandoffLabel) -> [ClaimAction] {
        modify(label.topicLevel) { $0.stopping = true }
        return abortRankedWaits(of: [label.topicLevel]) { HandoffError.notSubscribed($0) }
    }

    /// Stops watching `label` at once: its claims still waiting fail with ``HandoffError/notSubscribed(_:)``. Returns
    /// whether it was watched (its notices end), the answers, and what this participant still held for the label.
    ///
    /// The label stays tracked: its waiting handoffs and rounds are kept, without what this participant won or
    /// claimed, which the caller settles.
    package mutating func stopWatching(_ label: HandoffLabel) -> (wasWatched: Bool, actions: [ClaimAction], unsettled: Unsettled) {
        var actions: [ClaimAction] = []
        for round in claims.keys where round.level == label.topicLevel {
            if let token = claims.removeValue(forKey: round) {
                actions.append(.answerClaim(token: token, .failure(HandoffError.notSubscribed(label))))
            }
        }
        guard let index = labels.index(forKey: label.topicLevel), labels.values[index].isWatched else {
            return (false, actions, Unsettled())
        }
        let rounds = labels.values[index]
        labels.values[index].isWatched = false
        labels.values[index].stopping = false
        labels.values[index].won = [:]
        labels.values[index].pending = rounds.pending.filter { !$0.value.claimInFlight }.mapValues { entry in
            var entry = entry
            entry.rankedWait = nil  // its caller is answered above (its claim is among the label's)
            return entry
        }
        boundTracking(adding: labels.values[index].payloadBytes, &actions)
        var unsettled = Unsettled()
        unsettled.add(rounds)
        return (true, actions, unsettled)
    }

    /// Whether a merge claim of this participant for the labels `levels` (every label when `nil`) waits for its verdict.
    package func hasClaimsInFlight(_ levels: Set<String>?) -> Bool {
        labels.contains { level, rounds in
            (levels?.contains(level) ?? true) && rounds.pending.values.contains(where: \.claimInFlight)
        }
    }

    /// The handoffs a caller of `label` may claim: won and not handed out, and waiting without a claim of ours.
    package func pending(_ label: HandoffLabel) throws -> [HandoffEnvelope] {
        guard let rounds = labels[label.topicLevel], rounds.isWatched else { throw HandoffError.notSubscribed(label) }
        let entries = Array(rounds.won.values) + rounds.pending.values.filter { !$0.claiming && $0.rankedWait == nil }
        return entries.map(\.envelope).sorted { ($0.createdAt, $0.id.rawValue) < ($1.createdAt, $1.id.rawValue) }
    }

    /// The payload of round `key` of `label` as received, if it waits or was won here.
    package func payload(_ label: HandoffLabel, _ key: String) -> Data? {
        guard let rounds = labels[label.topicLevel] else { return nil }
        return (rounds.pending[key] ?? rounds.won[key])?.payload
    }

    /// Whether a readable handoff of round `key` is waiting without a verdict, as this participant saw it.
    package func isRoundOpen(_ label: HandoffLabel, _ key: String) -> Bool {
        labels[label.topicLevel]?.openRounds[key] != nil
    }

    /// The `signature.mac` signed claims of round `key` bind to: its open round's, or its waiting envelope's.
    package func roundMAC(_ label: HandoffLabel, _ key: String) -> String? {
        labels[label.topicLevel].flatMap { $0.openRounds[key]?.mac ?? $0.pending[key]?.envelope.signatureMAC }
    }

    /// The winner of the latest round `key` of `label`, if this participant saw its verdict.
    package func winner(_ label: HandoffLabel, _ key: String) -> String? {
        labels[label.topicLevel]?.verdicts[key]?.winner
    }

    // MARK: - Messages on round topics, in the broker's order

    /// A readable handoff of round `id` arrived (live, or `retained`), with `handoff-restore-by` = `restoredBy` if it is
    /// a restore (docs/PROTOCOL.md §5 rule 1, §5 "Broker crashes", §10.6).
    package mutating func handoffSeen(
        _ label: HandoffLabel, id: String, envelope: HandoffEnvelope, payload: Data, restoredBy: String?, retained: Bool,
        now: ContinuousClock.Instant
    ) -> [ClaimAction] {
        let instance = self.instance
        var actions: [ClaimAction] = []
        let tracked = modify(label.topicLevel) { rounds -> Bool? in
            if restoredBy != nil, rounds.restoresOpenRound(id, payload: payload) { return nil }
            let mergedHereBefore = rounds.verdicts[id]?.merged(by: instance) ?? false
            // A handoff on this topic opens a new round: earlier claims no longer count.
            rounds.verdicts[id] = nil
            let mine = envelope.origin.instance == instance
            rounds.openRounds[id] = Round(payload: mine ? nil : payload, mac: envelope.signatureMAC)
            // Merged here before (a resurrection after a broker crash, or a stale restore), or this participant's own
            // restore of a round that was decided meanwhile (docs/PROTOCOL.md §10.6). Only a live one: a retained copy
            // of its own restore, delivered after a resubscription, may be the only copy of a waiting handoff.
            if mergedHereBefore || (restoredBy == instance && !retained) {
                actions.append(.claimAlreadyMerged(label, key: id, roundMAC: envelope.signatureMAC, cause: .mergedBefore))
                return nil
            }
            guard !mine else { return nil }
            rounds.handedOffBy.insert(envelope.origin.instance)
            // The same handoff again (re-sent retained copy after a resubscription): keep its claim state.
            var entry = Entry(key: id, envelope: envelope, payload: payload)
            entry.wasRetained = retained
            if restoredBy != nil { entry.claimableAt = now + Self.restoreGrace }
            rounds.replacePending(id, with: entry)
            if rounds.isWatched { actions.append(.offer(label)) }
            // It replaces its origin's checkpoint of the label: a released one waiting here is cleared, never merged
            // (a held one is when it is released, docs/PROTOCOL.md §9.6).
            let checkpoint = Self.checkpointKey(envelope.origin.instance)
            if let released = rounds.pending[checkpoint], !released.claiming {
                rounds.pending[checkpoint] = nil
                actions.append(
                    .claimAlreadyMerged(label, key: checkpoint, roundMAC: released.envelope.signatureMAC, cause: .replacedByHandoff))
            }
            return !rounds.isWatched
        }
        if tracked ?? nil == true { boundTracking(adding: payload.count, &actions) }
        return actions
    }

    /// An unreadable message (failing docs/PROTOCOL.md §4 "Reading an envelope") on the topic of round `key`. On an
    /// open round it neither opens nor decides a round: it is dead-lettered without a claim, so that the waiting
    /// handoff stays claimable by those who saw it, and the handoff is restored over it (§5 rule 1, §10.6).
    package mutating func unreadableSeen(
        _ label: HandoffLabel, key: String, payload: Data, reason: HandoffRejection.Reason, detail: String
    ) -> [ClaimAction] {
        let roundOpen = isRoundOpen(label, key)
        var actions: [ClaimAction] = []
        if roundOpen { actions.append(clearedWithoutClaim(label, key, cause: "an unreadable payload (\(reason.rawValue)) in its place")) }
        if reason == .unsupportedFormat || reason == .unknownKey {
            actions.append(.leaveRejected(label, key: key, reason: reason, detail: detail))
        } else {
            actions.append(.deadLetterRejected(label, key: key, payload: payload, reason: reason, detail: detail, claim: !roundOpen))
        }
        return actions
    }

    /// A zero-length message on the topic of round `key` (`topic`), with its `handoff-claim-by`, `handoff-claim-purpose`
    /// and `handoff-claim-signature` values: the round's verdict if it is the first claim since the round opened
    /// (docs/PROTOCOL.md §5 rules 2–4, §10.5), a clear to repair if it is no claim (§10.6), else nothing.
    package mutating func claimSeen(
        _ label: HandoffLabel, key: String, topic: String, claimer: String?, purpose: String?, signature: String?
    ) -> [ClaimAction] {
        guard let claimer, !claimer.isEmpty else {
            // A clear without a claim (another tool, an operator, an attacker): not a claim. Whoever holds the handoff
            // can still claim it, and restores it for later subscribers (docs/PROTOCOL.md §10.6).
            return [clearedWithoutClaim(label, key, cause: "a zero-length message without handoff-claim-by")]
        }
        if let keys {
            let mac = labels[label.topicLevel]?.openRounds[key]?.mac
            guard keys.verifiesClaim(signature, topic: topic, claimBy: claimer, purpose: purpose, roundMAC: mac) else {
                // Not a claim either (docs/PROTOCOL.md §10.5): forged, or by a participant whose keys this one does not hold.
                let cause = signature == nil ? "an unsigned claim by \(claimer)" : "a claim by \(claimer) whose signature does not verify"
                return [clearedWithoutClaim(label, key, cause: cause)]
            }
        }
        let mine = claimer == instance
        // Only `dead-letter` and `already-merged` claims are not merged: a claim without a purpose, with `merge` or with
        // a purpose this release does not know is a merge, so that its winner never drops the handoff.
        let merging = !Self.unmergedPurposes.contains(purpose ?? "merge")
        let verdict = Verdict(winner: claimer, merging: merging, alreadyMerged: purpose == "already-merged")
        let decided = modify(label.topicLevel) { rounds -> (entry: Entry?, watched: Bool)? in
            guard rounds.openRounds.removeValue(forKey: key) != nil else { return nil }
            rounds.record(verdict: verdict, for: key)
            let entry = rounds.pending.removeValue(forKey: key)
            rounds.held[key] = nil
            return (entry, rounds.isWatched)
        }
        guard let decided = decided ?? nil else { return [] }
        let token = claims.removeValue(forKey: RoundID(label, key))
        if mine, merging, token == nil, let entry = decided.entry {
            // Won, but whoever asked has given up: kept for the next complete().
            modify(label.topicLevel) { $0.won[key] = entry }
            return decided.watched ? [.offer(label)] : []
        }
        return token.map { [.answerClaim(token: $0, .success(mine && merging))] } ?? []
    }

    /// The retained copy of round `key` was removed (or replaced) by something that is not a claim: its payload is to
    /// be published again as received, after a random delay, unless a restore or a verdict comes first (§10.6).
    mutating func clearedWithoutClaim(_ label: HandoffLabel, _ key: String, cause: String) -> ClaimAction {
        let action = modify(label.topicLevel) { rounds -> ClaimAction? in
            // A held checkpoint is repaired by its live writer, which alone knows its newest one.
            guard var round = rounds.openRounds[key], let payload = round.payload, !round.restoreDue, rounds.held[key] == nil else {
                return nil
            }
            guard round.restores < Self.maximumRestores else { return .restoreLimitReached(label, key: key, cause: cause) }
            round.restoreDue = true
            rounds.openRounds[key] = round
            return .scheduleRestore(label, key: key, payload: payload, cause: cause)
        }
        return (action ?? nil) ?? .nothingToRestore(label, key: key, cause: cause)
    }

    /// The random delay of a ``ClaimAction/scheduleRestore(_:key:payload:cause:)`` is over: whether to publish the
    /// restore now (the round is still open with that payload and nobody restored it meanwhile). Counts the restore.
    package mutating func restoreIsDue(_ label: HandoffLabel, _ key: String, payload: Data) -> Bool {
        modify(label.topicLevel) { rounds -> Bool in
            guard var round = rounds.openRounds[key], round.restoreDue, round.payload == payload else { return false }
            round.restoreDue = false
            round.restores += 1
            rounds.openRounds[key] = round
            return true
        } ?? false
    }

    // MARK: - Checkpoints and statuses (docs/PROTOCOL.md §9)

    /// A readable checkpoint of another `instance` (at `incarnation`) arrived on its topic.
    package mutating func checkpointSeen(
        _ label: HandoffLabel, instance: String, envelope: HandoffEnvelope, payload: Data, restoredBy: String?, retained: Bool,
        now: ContinuousClock.Instant
    ) -> [ClaimAction] {
        guard let incarnation = envelope.incarnation else { return [] }
        let key = Self.checkpointKey(instance)
        if let restoredBy {
            guard !(modify(label.topicLevel) { $0.restoresOpenRound(key, payload: payload) } ?? false) else { return [] }
            if restoredBy == self.instance, !retained {
                // This participant's own restore of a round decided meanwhile: a stale restore (docs/PROTOCOL.md §10.6).
                modify(label.topicLevel) { $0.openRounds[key] = Round(payload: payload, mac: envelope.signatureMAC) }
                return [.claimAlreadyMerged(label, key: key, roundMAC: envelope.signatureMAC, cause: .staleCheckpointRestore)]
            }
        }
        var actions: [ClaimAction] = []
        let released = incarnation <= releasedThrough[instance, default: 0]
        if labels[label.topicLevel]?.isWatched == false { boundTracking(adding: payload.count, &actions) }
        let own = self.instance
        let action = modify(label.topicLevel) { rounds -> ClaimAction? in
            let previous = rounds.verdicts[key]
            rounds.verdicts[key] = nil
            rounds.openRounds[key] = Round(payload: payload, mac: envelope.signatureMAC)
            var entry = Entry(key: key, envelope: envelope, payload: payload)
            if restoredBy != nil { entry.claimableAt = now + Self.restoreGrace }
            if previous?.merged(by: own) ?? false {
                // A checkpoint written after the one merged here (a late write of its fenced owner): the state it adds
                // was the dead owner's, not to be merged twice.
                return .claimAlreadyMerged(label, key: key, roundMAC: envelope.signatureMAC, cause: .lateCheckpointWrite)
            }
            if rounds.handedOffBy.contains(instance) {
                guard released else {
                    rounds.held[key] = entry
                    return nil
                }
                return .claimAlreadyMerged(label, key: key, roundMAC: envelope.signatureMAC, cause: .replacedByHandoff)
            }
            guard released else {
                rounds.held[key] = entry
                // A claim of this participant still in flight for the round before keeps its (marked) entry, so that
                // stopping waits for that claim's verdict.
                if rounds.pending[key]?.claiming != true { rounds.pending[key] = nil }
                return nil
            }
            rounds.held[key] = nil
            rounds.replacePending(key, with: entry)
            return rounds.isWatched ? .offer(label) : nil
        }
        if let action = action ?? nil { actions.append(action) }
        return actions
    }

    /// An unreadable message on the checkpoint topic of `instance`: ignored while the instance has released nothing
    /// (it writes again), dead-lettered once it has released checkpoints (docs/PROTOCOL.md §9.3 step 2).
    package mutating func unreadableCheckpointSeen(
        _ label: HandoffLabel, instance: String, payload: Data, reason: HandoffRejection.Reason, detail: String
    ) -> [ClaimAction] {
        guard releasedThrough[instance, default: 0] > 0 else {
            return [.ignoreUnreadableCheckpoint(label, instance: instance, reason: reason)]
        }
        return unreadableSeen(label, key: Self.checkpointKey(instance), payload: payload, reason: reason, detail: detail)
    }

    /// A readable status of another `instance` (docs/PROTOCOL.md §9.1): its incarnation, whether it is a birth or
    /// heartbeat (`online`) or a death notice, and what it releases through. Releases the held checkpoints it covers.
    package mutating func statusSeen(
        instance: String, incarnation: Int, online: Bool, releasedThrough through: Int, now: ContinuousClock.Instant
    ) -> [ClaimAction] {
        if incarnation >= lastStatus[instance]?.incarnation ?? 0 { lastStatus[instance] = (incarnation, online) }
        if online { lastHeard[instance] = now }
        guard through > releasedThrough[instance, default: 0] else { return [] }
        releasedThrough[instance] = through
        let key = Self.checkpointKey(instance)
        var actions: [ClaimAction] = []
        var count = 0
        for level in labels.keys {
            modify(level) { rounds in
                guard let held = rounds.held[key], let incarnation = held.envelope.incarnation, incarnation <= through else { return }
                rounds.held[key] = nil
                count += 1
                if rounds.handedOffBy.contains(instance) {
                    actions.append(
                        .claimAlreadyMerged(rounds.label, key: key, roundMAC: held.envelope.signatureMAC, cause: .replacedByHandoff))
                } else {
                    rounds.replacePending(key, with: held)
                    if rounds.isWatched { actions.append(.offer(rounds.label)) }
                }
            }
        }
        if count > 0 { actions.insert(.releasedCheckpoints(instance: instance, through: through, online: online, labels: count), at: 0) }
        return actions
    }

    /// The instances whose checkpoints this participant holds, whose latest status says they are online, and that it
    /// has not heard from for `lease` by `now`: their Will may have been lost (docs/PROTOCOL.md §9.4). Returns each one
    /// with the incarnation to declare dead.
    package func silentInstances(lease: Duration, now: ContinuousClock.Instant) -> [(instance: String, incarnation: Int)] {
        var holders: Set<String> = []
        for rounds in labels.values {
            for key in rounds.held.keys { holders.insert(Self.topicLevel(ofKey: key)) }
        }
        return holders.compactMap { instance in
            guard let status = lastStatus[instance], status.online, status.incarnation > releasedThrough[instance, default: 0],
                let heard = lastHeard[instance], heard.duration(to: now) > lease
            else { return nil }
            return (instance, status.incarnation)
        }
    }

    // MARK: - Claiming

    /// When round `key` may be claimed for merging (a round opened by a restore, §10.6); `nil`: now.
    package func claimableAt(_ label: HandoffLabel, _ key: String) -> ContinuousClock.Instant? {
        labels[label.topicLevel]?.pending[key]?.claimableAt
    }

    /// How ``startClaim(_:_:ranked:)`` begins.
    package enum ClaimStart: Sendable, Equatable {
        /// Decided without a claim: won before (handed out now), lost, or nothing to win.
        case decided(Bool)
        /// Claim it: `token` names the claim, `roundMAC` is what it is signed for.
        case claim(token: UInt64, roundMAC: String?)
    }

    /// A caller claims round `key` of `label` for merging; `ranked`: its claim waits its turn before it is published.
    package mutating func startClaim(_ label: HandoffLabel, _ key: String, ranked: Bool) throws -> ClaimStart {
        guard !isShutDown, !stopping else { throw HandoffError.shutdown }
        let (token, instance) = (nextToken, self.instance)
        let start = modify(label.topicLevel) { rounds -> ClaimStart? in
            guard rounds.isWatched, !rounds.stopping else { return nil }
            if rounds.won.removeValue(forKey: key) != nil { return .decided(true) }
            if let won = rounds.decided(key, by: instance) { return .decided(won) }
            // Not waiting (never seen, or claimed by this process already): nothing to win.
            guard let entry = rounds.pending[key], !entry.claiming, entry.rankedWait == nil else { return .decided(false) }
            if ranked {
                rounds.pending[key]?.rankedWait = token
            } else {
                rounds.pending[key]?.claiming = true
            }
            return .claim(token: token, roundMAC: rounds.openRounds[key]?.mac ?? entry.envelope.signatureMAC)
        }
        guard let start = start ?? nil else { throw HandoffError.notSubscribed(label) }
        if case .claim = start { nextToken += 1 }
        return start
    }

    /// How ``registerClaim(_:_:token:cancelled:)`` ends.
    package enum ClaimRegistration: Sendable, Equatable {
        case shutDown
        /// The caller was cancelled before anything was published: the handoff is still its to claim later.
        case cancelled
        /// Another participant's claim arrived since the claim was started: its verdict is final.
        case decided(Bool)
        /// Waiting for the verdict: publish the claim now (or when its ranked turn comes). `superseded`: a claim of
        /// the same round that waited before, to be answered `claimOutcomeUnknown`.
        case waiting(superseded: UInt64?)
    }

    /// The claim `token` (from ``startClaim(_:_:ranked:)``) starts waiting for its verdict. Called before its claim is
    /// published, atomically with respect to the messages routed (docs/PROTOCOL.md §5 "To claim").
    package mutating func registerClaim(_ label: HandoffLabel, _ key: String, token: UInt64, cancelled: Bool) -> ClaimRegistration {
        guard !isShutDown else { return .shutDown }
        if cancelled {
            modify(label.topicLevel) { rounds in
                rounds.pending[key]?.claiming = false
                if rounds.pending[key]?.rankedWait == token { rounds.pending[key]?.rankedWait = nil }
            }
            return .cancelled
        }
        let instance = self.instance
        if let won = modify(label.topicLevel, { $0.decided(key, by: instance) }) ?? nil { return .decided(won) }
        return .waiting(superseded: claims.updateValue(token, forKey: RoundID(label, key)))
    }

    /// What to do when the ranked wait of a claim is over.
    package enum RankedTurn: Sendable {
        /// Nothing: the claim was answered meanwhile.
        case none
        /// Publish the claim now: it waits for its verdict.
        case publish
        /// Answer it without publishing: decided meanwhile, replaced by a new round, or its label stops.
        case answer(Result<Bool, any Error>)
    }

    /// The ranked wait of claim `token` is over (docs/PROTOCOL.md §5 "Ranked claims", step 4).
    package mutating func rankedTurn(_ label: HandoffLabel, _ key: String, token: UInt64) -> RankedTurn {
        let round = RoundID(label, key)
        guard claims[round] == token else { return .none }
        let stopping = isShutDown || self.stopping
        var answer: Result<Bool, any Error>?
        if let index = labels.index(forKey: label.topicLevel) {
            let rounds = labels.values[index]
            if let entry = rounds.pending[key], entry.rankedWait == token, !entry.deadLettering {
                labels.values[index].pending[key]?.rankedWait = nil
                if stopping || rounds.stopping {
                    answer = .failure(stopping ? HandoffError.shutdown : HandoffError.notSubscribed(label))
                } else {
                    labels.values[index].pending[key]?.claiming = true
                }
            } else {
                // Decided, replaced by a new round (offered again with its own notice) or being dead-lettered.
                answer = .success(false)
            }
        } else {
            answer = .failure(HandoffError.notSubscribed(label))
        }
        guard let answer else { return .publish }
        claims[round] = nil
        return .answer(answer)
    }

    /// The claim `token` stops waiting for its verdict (timeout, cancellation; `unpublished`: its publish failed, so
    /// the handoff is claimable again). Returns whether it was still waiting: the driver then answers it. The verdict
    /// is still recorded when it comes; a ranked claim still waiting for its turn is not published at all.
    package mutating func claimAbandoned(_ label: HandoffLabel, _ key: String, token: UInt64, unpublished: Bool) -> Bool {
        let round = RoundID(label, key)
        guard claims[round] == token else { return false }
        modify(label.topicLevel) { rounds in
            if unpublished { rounds.pending[key]?.claiming = false }
            if rounds.pending[key]?.rankedWait == token { rounds.pending[key]?.rankedWait = nil }
        }
        claims[round] = nil
        return true
    }

    /// Ends the ranked waits of the labels `levels` (all when `nil`) with `error`, without claiming: stopping makes no
    /// new claim (docs/PROTOCOL.md §5, "Stopping"), and a claim never published has no verdict to wait for.
    mutating func abortRankedWaits(of levels: Set<String>?, with error: (HandoffLabel) -> any Error) -> [ClaimAction] {
        var actions: [ClaimAction] = []
        for (round, token) in claims {
            guard levels?.contains(round.level) ?? true, let index = labels.index(forKey: round.level),
                labels.values[index].pending[round.key]?.rankedWait == token
            else { continue }
            labels.values[index].pending[round.key]?.rankedWait = nil
            claims[round] = nil
            actions.append(.answerClaim(token: token, .failure(error(labels.values[index].label))))
        }
        return actions
    }

    // MARK: - Claims decided by an arbiter (docs/PROTOCOL.md §11)

    /// How ``startArbitratedClaim(_:_:)`` begins.
    package enum ArbitratedStart: Sendable {
        case decided(Bool)
        /// Take it in the arbiter's store.
        case take(Entry)
    }

    /// A caller claims handoff `id` through the arbiter.
    package mutating func startArbitratedClaim(_ label: HandoffLabel, _ id: String) throws -> ArbitratedStart {
        guard !isShutDown, !stopping else { throw HandoffError.shutdown }
        let start = modify(label.topicLevel) { rounds -> ArbitratedStart? in
            guard rounds.isWatched, !rounds.stopping else { return nil }
            if rounds.won.removeValue(forKey: id) != nil { return .decided(true) }
            guard let entry = rounds.pending[id], !entry.claiming else { return .decided(false) }
            rounds.pending[id]?.claiming = true
            return .take(entry)
        }
        guard let start = start ?? nil else { throw HandoffError.notSubscribed(label) }
        return start
    }

    /// The arbiter decided nothing (unreachable): the handoff is still waiting, and may be claimed again.
    package mutating func arbitrationFailed(_ label: HandoffLabel, _ id: String) {
        modify(label.topicLevel) { $0.pending[id]?.claiming = false }
    }

    /// The arbiter decided (`won`), or its answer was lost (`won` nil: the handoff is dead-lettered, not tracked).
    /// Returns the round's MAC (`claimed`'s when the round has none), for the claim published on MQTT.
    package mutating func arbitrated(_ label: HandoffLabel, _ id: String, won: Bool?, claimed: Entry) -> String? {
        let instance = self.instance
        return modify(label.topicLevel) { rounds -> String? in
            let mac = rounds.openRounds[id]?.mac ?? claimed.envelope.signatureMAC
            rounds.pending[id] = nil
            rounds.openRounds[id] = nil
            if won == true { rounds.record(verdict: Verdict(winner: instance, merging: true), for: id) }
            return mac
        } ?? nil
    }

    // MARK: - Dead letters and give-backs

    /// Round `key` is being dead-lettered by this participant (`true`): it is not offered again, and its claim is not
    /// one whose verdict stopping waits for; or that failed (`false`).
    package mutating func deadLettering(_ label: HandoffLabel, _ key: String, _ on: Bool) {
        modify(label.topicLevel) { rounds in
            rounds.pending[key]?.claiming = on
            rounds.pending[key]?.deadLettering = on
        }
    }

    /// A handoff this participant won is given back (docs/PROTOCOL.md §5 "Stopping", step 2): its verdict is forgotten
    /// first, so that its new round is a waiting handoff here, not one merged before.
    package mutating func givingBack(_ label: HandoffLabel, _ key: String) {
        modify(label.topicLevel) { rounds in
            rounds.verdicts[key] = nil
            rounds.won[key] = nil
        }
    }

    // MARK: - Connection changes and shutdown

    /// The connection came back (`now`): nothing could be heard while disconnected, so the liveness lease of every
    /// instance starts again.
    package mutating func reconnected(now: ContinuousClock.Instant) {
        for instance in lastHeard.keys { lastHeard[instance] = now }
    }

    /// The broker kept no session on a reconnect (docs/PROTOCOL.md §5 "Disconnects mid-claim"): every round is
    /// forgotten (the waiting handoffs come back as retained messages), claims waiting fail, and the handoffs whose
    /// claim was in flight are dead-lettered `claim-outcome-unknown`. Returns those actions and how many claims were
    /// in flight.
    package mutating func sessionLost() -> (actions: [ClaimAction], claimsInFlight: Int) {
        var uncertain: [Entry] = []
        var unpublished: Set<UInt64> = []
        for index in labels.indices {
            let rounds = labels.values[index]
            uncertain += rounds.pending.values.filter(\.claimInFlight)
            unpublished.formUnion(rounds.pending.values.compactMap(\.rankedWait))
            labels.values[index].pending = [:]
            labels.values[index].held = [:]
            labels.values[index].openRounds = [:]
            labels.values[index].verdicts = [:]
            labels.values[index].verdictOrder = []
        }
        var actions: [ClaimAction] = claims.values.map { token in
            let detail =
                unpublished.contains(token)
                ? "the broker session was lost before this participant's ranked claim was published; the waiting handoffs are read again"
                : "the broker session was lost during the claim; the handoff was dead-lettered"
            return .answerClaim(token: token, .failure(HandoffError.transportUnavailable(detail)))
        }
        claims = [:]
        actions += uncertain.map {
            .deadLetterOutcomeUnknown(
                $0,
                detail:
                    "the broker session was lost while this participant's claim was in flight; another participant may also have merged it"
            )
        }
        return (actions, uncertain.count)
    }

    /// Shutting down: no new claim starts, ranked waits end without a claim.
    package mutating func beginShutdown() -> [ClaimAction] {
        stopping = true
        return abortRankedWaits(of: nil) { _ in HandoffError.shutdown }
    }

    /// Ends the machine: every claim still waiting fails with ``HandoffError/shutdown``. Returns those answers, and
    /// the handoffs won and not handed out, and the claims still without a verdict, of every label.
    package mutating func shutDown() -> (actions: [ClaimAction], unsettled: Unsettled) {
        isShutDown = true
        var unsettled = Unsettled()
        for rounds in labels.values { unsettled.add(rounds) }
        let actions: [ClaimAction] = claims.values.map { .answerClaim(token: $0, .failure(HandoffError.shutdown)) }
        labels = [:]
        claims = [:]
        return (actions, unsettled)
    }
}
