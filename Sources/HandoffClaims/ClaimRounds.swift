import Foundation
import Handoff

extension ClaimStateMachine {
    /// A waiting handoff (or a released or held checkpoint) as this participant saw it: the envelope, the payload as
    /// received, and this participant's own claim state for it.
    package struct Entry: Sendable {
        /// Its round key: the handoff id, or `@` + the instance of a checkpoint.
        package var key: String
        package var envelope: HandoffEnvelope
        /// The payload exactly as received (what a dead letter stores, and a give-back or a restore publishes).
        package var payload: Data
        /// A claim of ours is in flight for it (a merge claim, or the claim that ends a dead-lettering).
        package var claiming = false
        /// It is being dead-lettered by this participant: its claim is not one whose verdict must be awaited.
        package var deadLettering = false
        /// Its round was opened by a restore (docs/PROTOCOL.md §10.6): not to be claimed for merging before then.
        package var claimableAt: ContinuousClock.Instant?
        /// It arrived as a retained message (or from a claim arbiter's list), not live.
        package var wasRetained = false
        /// The token of this participant's ranked merge claim that waits for its turn, not yet published
        /// (docs/PROTOCOL.md §5, "Ranked claims"); a new payload (a new round) drops it, which ends the wait.
        package var rankedWait: UInt64?

        package init(key: String, envelope: HandoffEnvelope, payload: Data) {
            self.key = key
            self.envelope = envelope
            self.payload = payload
        }

        /// A merge claim of this participant is in flight for it: stopping waits for its verdict.
        var claimInFlight: Bool { claiming && !deadLettering }
    }

    /// An open round of one topic: a readable handoff (or released or held checkpoint) seen, no verdict yet.
    package struct Round: Sendable {
        /// The payload as received, to restore it after a clear that is not a claim; `nil` for this participant's own.
        package var payload: Data?
        /// The envelope's `signature.mac`, which signed claims of the round bind to (docs/PROTOCOL.md §10.5).
        package var mac: String?
        /// Restores this participant published for the round (at most ``ClaimStateMachine/maximumRestores``).
        package var restores = 0
        /// A restore is due after its random delay; a restore seen in the meantime cancels it.
        package var restoreDue = false
    }

    /// The first claim of a round: who won, and whether to merge it, dead-letter it, or nothing (`already-merged`).
    package struct Verdict: Sendable, Hashable {
        package var winner: String
        package var merging: Bool
        package var alreadyMerged = false

        /// Whether the round's handoff was merged by `instance` (or found merged before, and cleared by it): a new
        /// round of the same payload is then a resurrection or a stale restore, to be claimed `already-merged`.
        func merged(by instance: String) -> Bool {
            winner == instance && (merging || alreadyMerged)
        }
    }

    /// What a participant that stops watching still holds and nobody else will: handoffs it won but did not hand
    /// to a caller, and merge claims whose verdict it never saw (docs/PROTOCOL.md §5, "Stopping").
    package struct Unsettled: Sendable {
        /// Won (the verdict names this participant), not merged: to be returned to the waiting handoffs.
        package var won: [Entry] = []
        /// Claimed, no verdict seen: the outcome is unknown, to be dead-lettered as `claim-outcome-unknown`.
        package var unknown: [Entry] = []

        package init() {}

        package var isEmpty: Bool { won.isEmpty && unknown.isEmpty }

        mutating func add(_ labelRounds: LabelRounds) {
            won += labelRounds.won.values
            unknown += labelRounds.pending.values.filter(\.claimInFlight)
        }
    }

    /// The rounds of one label seen on the transport's wildcard subscription: watched (a caller reads its notices and
    /// claims), or only tracked (nobody here watches it yet, but its waiting handoffs and rounds are kept, so that
    /// watching it later needs no subscription of its own).
    package struct LabelRounds: Sendable {
        let label: HandoffLabel
        /// Whether a caller watches the label (not only tracked).
        var isWatched: Bool
        /// Handoffs waiting, by key: seen, not yet claimed by anyone.
        var pending: [String: Entry] = [:]
        /// Handoffs this participant won whose claim() caller had given up (timeout, reconnect): handed out next time.
        var won: [String: Entry] = [:]
        /// Topics (by key) whose round is open: the handoff was seen, no claim yet. Claims on a topic whose round this
        /// participant did not see open (it subscribed after the first claim) are not verdicts.
        var openRounds: [String: Round] = [:]
        /// Winners of recent rounds, by key, to answer late claim() calls.
        var verdicts: [String: Verdict] = [:]
        var verdictOrder: [String] = []
        /// Being unwatched: waiting for the verdicts of claims in flight; no new claim starts.
        var stopping = false
        /// Checkpoints of instances that have not released them, by key: the latest one of each (docs/PROTOCOL.md §9).
        var held: [String: Entry] = [:]
        /// Instances whose handoff of this label was seen: it replaces their checkpoint of the label, which is then
        /// cleared, never merged (a successor never merges both).
        var handedOffBy: Set<String> = []

        /// The payload bytes this label's state holds (what tracking it costs).
        var payloadBytes: Int {
            pending.values.reduce(0) { $0 + $1.payload.count } + held.values.reduce(0) { $0 + $1.payload.count }
        }

        /// Stores the waiting handoff of round `key`, unless the same payload is there already. A claim of this
        /// participant in flight stays marked (its verdict decides the new round, and stopping must wait for it).
        mutating func replacePending(_ key: String, with entry: Entry) {
            guard let previous = pending[key] else {
                pending[key] = entry
                return
            }
            guard previous.payload != entry.payload else { return }
            var entry = entry
            entry.claiming = previous.claiming
            entry.deadLettering = previous.deadLettering
            pending[key] = entry
        }

        /// The verdict of round `key` as claim() answers it: whether this participant won it for merging. A win is
        /// handed out once: it leaves the `won` table.
        mutating func decided(_ key: String, by instance: String) -> Bool? {
            guard let verdict = verdicts[key] else { return nil }
            let won = verdict.merging && verdict.winner == instance
            if won { self.won[key] = nil }
            return won
        }

        mutating func record(verdict: Verdict, for key: String) {
            verdicts[key] = verdict
            verdictOrder.append(key)
            if verdictOrder.count > 20_000 {
                for old in verdictOrder.prefix(10_000) { verdicts[old] = nil }
                verdictOrder.removeFirst(10_000)
            }
        }

        /// Whether a restore (a payload with `handoff-restore-by`) changes nothing: it repeats, byte for byte, the
        /// payload of a round that is open here. It then also stands for this participant's own restore, if one is due.
        mutating func restoresOpenRound(_ key: String, payload: Data) -> Bool {
            guard var round = openRounds[key], round.payload == nil || round.payload == payload else { return false }
            round.restoreDue = false
            openRounds[key] = round
            return true
        }
    }

    /// One round of one label: the label's topic level and the round key.
    package struct RoundID: Sendable, Hashable {
        package var level: String
        package var key: String

        package init(_ label: HandoffLabel, _ key: String) {
            self.level = label.topicLevel
            self.key = key
        }
    }
}
