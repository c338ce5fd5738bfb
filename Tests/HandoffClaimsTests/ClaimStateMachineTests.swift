import Foundation
import Handoff
import Testing

@testable import HandoffClaims

/// One participant's claim state machine (instance `me`) fed scripted message orders, without a broker.
struct Script {
    static let me = "me"
    var machine = ClaimStateMachine(instance: Script.me)
    let label = try! HandoffLabel("counter")
    let now = ContinuousClock.now

    /// A script whose participant watches `label`.
    static func watching() -> Script {
        var script = Script()
        _ = script.machine.startWatching(script.label)
        return script
    }

    /// A handoff of `label` initiated by `origin`.
    func envelope(_ id: String, from origin: String = "predecessor", incarnation: Int? = nil, value: Int = 1) -> HandoffEnvelope {
        HandoffEnvelope(
            id: try! HandoffID(id), label: label, vsn: 1, createdAt: Date(timeIntervalSince1970: 1_000),
            origin: HandoffOrigin(instance: origin),
            data: Data("\(value)".utf8), incarnation: incarnation
        )
    }

    /// The handoff `id` arrives (live unless `retained`).
    @discardableResult
    mutating func handoff(
        _ id: String, from origin: String = "predecessor", retained: Bool = false, restoredBy: String? = nil, value: Int = 1
    ) -> [ClaimAction] {
        let envelope = envelope(id, from: origin, value: value)
        return machine.handoffSeen(
            label, id: id, envelope: envelope, payload: envelope.encoded(), restoredBy: restoredBy, retained: retained, now: now)
    }

    /// A claim of round `key` by `claimer` arrives.
    @discardableResult
    mutating func claim(_ key: String, by claimer: String?, purpose: String? = "merge") -> [ClaimAction] {
        machine.claimSeen(label, key: key, topic: "handoff/handoffs/counter/\(key)", claimer: claimer, purpose: purpose, signature: nil)
    }

    /// This participant's caller claims `key`; returns the token of the claim that waits for its verdict.
    mutating func requestClaim(_ key: String, ranked: Bool = false) throws -> UInt64? {
        guard case .claim(let token, _) = try machine.startClaim(label, key, ranked: ranked) else { return nil }
        #expect(machine.registerClaim(label, key, token: token, cancelled: false) == .waiting(superseded: nil))
        return token
    }

    func pendingIDs() throws -> [String] { try machine.pending(label).map(\.id.rawValue) }
}

extension ClaimAction {
    struct Answer: Equatable {
        var token: UInt64
        var won: Bool
        init(_ token: UInt64, _ won: Bool) { (self.token, self.won) = (token, won) }
    }

    /// The answer of a claim: its token and whether it won; `nil` for any other action or a failure.
    var answered: Answer? {
        guard case .answerClaim(let token, .success(let won)) = self else { return nil }
        return Answer(token, won)
    }

    var failedToken: UInt64? {
        guard case .answerClaim(let token, .failure) = self else { return nil }
        return token
    }

    var isOffer: Bool {
        if case .offer = self { return true }
        return false
    }

    var alreadyMergedCause: ClearCause? {
        guard case .claimAlreadyMerged(_, _, _, let cause) = self else { return nil }
        return cause
    }
}

@Suite("The claim state machine under scripted message orders (no broker)")
struct ClaimStateMachineTests {
    @Test("the first claim after the handoff is the verdict; later claims lose and change nothing")
    func firstClaimWins() throws {
        var script = Script.watching()
        #expect(script.handoff("h1").map(\.isOffer) == [true])
        let token = try #require(try script.requestClaim("h1"))
        #expect(try script.pendingIDs().isEmpty, "a handoff being claimed is not offered")
        let answers = script.claim("h1", by: "other")
        #expect(answers.count == 1 && answers[0].answered == .init(token, false))
        #expect(script.claim("h1", by: Script.me).isEmpty, "a later claim is no verdict")
        #expect(script.machine.winner(script.label, "h1") == "other")
    }

    @Test("a verdict that arrives between deciding to claim and registering answers the claim at once")
    func verdictBeforeRegistration() throws {
        var script = Script.watching()
        script.handoff("h1")
        guard case .claim(let token, _) = try script.machine.startClaim(script.label, "h1", ranked: false) else {
            Issue.record("no claim started")
            return
        }
        #expect(script.claim("h1", by: "someone-else").isEmpty, "nobody waits yet")
        #expect(script.machine.registerClaim(script.label, "h1", token: token, cancelled: false) == .decided(false))
        #expect(script.machine.winner(script.label, "h1") == "someone-else")
    }

    @Test("this participant's own claim first: it wins, and a won handoff is not offered again")
    func ownClaimWins() throws {
        var script = Script.watching()
        script.handoff("h1")
        let token = try #require(try script.requestClaim("h1"))
        #expect(script.claim("h1", by: Script.me).first?.answered == .init(token, true))
        #expect(script.claim("h1", by: "other").isEmpty)
        #expect(try script.pendingIDs().isEmpty)
        #expect(try script.machine.startClaim(script.label, "h1", ranked: false) == .decided(true), "a late claim() learns the verdict")
    }

    @Test("a duplicate delivery of the waiting handoff (a retained copy after a resubscription) keeps the claim in flight")
    func duplicateDelivery() throws {
        var script = Script.watching()
        script.handoff("h1")
        let token = try #require(try script.requestClaim("h1"))
        script.handoff("h1", retained: true)
        #expect(script.machine.hasClaimsInFlight(nil), "the claim is still in flight")
        #expect(try script.pendingIDs().isEmpty, "and the handoff is not offered twice")
        #expect(script.claim("h1", by: Script.me).first?.answered == .init(token, true))
    }

    @Test(
        "re-delivered after its verdict (QoS 1 after a reconnect), a handoff reopens its round, and the re-delivered claim decides it again"
    )
    func redeliveredRound() throws {
        var script = Script.watching()
        script.handoff("h1")
        script.claim("h1", by: "other")
        #expect(script.handoff("h1").map(\.isOffer) == [true], "a new round")
        #expect(try script.pendingIDs() == ["h1"])
        script.claim("h1", by: "other")
        #expect(try script.pendingIDs().isEmpty)
        #expect(script.machine.winner(script.label, "h1") == "other")
    }

    @Test("a late subscriber: a claim on a round it never saw open decides nothing, and restores nothing")
    func lateSubscriber() throws {
        var script = Script.watching()
        #expect(script.claim("h1", by: "other").isEmpty)
        #expect(script.machine.winner(script.label, "h1") == nil)
        guard case .nothingToRestore = script.claim("h1", by: nil).first else {
            Issue.record("a clear of an unknown round restores nothing")
            return
        }
    }

    @Test("a claim whose caller gave up (time limit) and that wins is kept, offered again, and handed out once")
    func wonAfterTheCallerLeft() throws {
        var script = Script.watching()
        script.handoff("h1")
        let token = try #require(try script.requestClaim("h1"))
        let abandoned = script.machine.claimAbandoned(script.label, "h1", token: token, unpublished: false)
        #expect(abandoned)
        #expect(script.machine.hasClaimsInFlight(nil), "its verdict is still awaited")
        #expect(script.claim("h1", by: Script.me).map(\.isOffer) == [true], "won, nobody waits: offered again")
        #expect(try script.pendingIDs() == ["h1"])
        #expect(try script.machine.startClaim(script.label, "h1", ranked: false) == .decided(true))
        #expect(try script.pendingIDs().isEmpty, "handed out once")
    }

    @Test("unwatching with a won handoff and a claim without verdict settles both")
    func unwatchSettles() throws {
        var script = Script.watching()
        script.handoff("won")
        script.handoff("unknown")
        let wonToken = try #require(try script.requestClaim("won"))
        _ = script.machine.claimAbandoned(script.label, "won", token: wonToken, unpublished: false)
        script.claim("won", by: Script.me)
        let unknown = try #require(try script.requestClaim("unknown"))
        let (wasWatched, actions, unsettled) = script.machine.stopWatching(script.label)
        #expect(wasWatched)
        #expect(actions.map(\.failedToken) == [unknown])
        #expect(unsettled.won.map(\.key) == ["won"])
        #expect(unsettled.unknown.map(\.key) == ["unknown"])
        #expect(!script.machine.isWatched(script.label))
    }

    @Test("a reconnect without a session forgets every round; a claim in flight is dead-lettered, its caller failed")
    func sessionLost() throws {
        var script = Script.watching()
        script.handoff("h1")
        script.handoff("h2")
        let token = try #require(try script.requestClaim("h1"))
        let (actions, inFlight) = script.machine.sessionLost()
        #expect(inFlight == 1)
        #expect(actions.compactMap(\.failedToken) == [token])
        #expect(actions.contains { if case .deadLetterOutcomeUnknown(let entry, _) = $0 { entry.key == "h1" } else { false } })
        #expect(try script.pendingIDs().isEmpty)
        // The retained messages come again with the resubscription.
        #expect(script.handoff("h2", retained: true).map(\.isOffer) == [true])
        #expect(script.claim("h1", by: Script.me).isEmpty, "the verdict of a forgotten round is none")
    }

    @Test("a handoff merged here that comes back (a broker crash lost its clear) is claimed already-merged")
    func resurrected() throws {
        var script = Script.watching()
        script.handoff("h1")
        _ = try script.requestClaim("h1")
        script.claim("h1", by: Script.me)
        #expect(script.handoff("h1", retained: true).map(\.alreadyMergedCause) == [.mergedBefore])
        #expect(try script.pendingIDs().isEmpty)
    }

    @Test("a handoff given back is a new round here, not a resurrection")
    func givenBack() throws {
        var script = Script.watching()
        script.handoff("h1")
        _ = try script.requestClaim("h1")
        script.claim("h1", by: Script.me)
        script.machine.givingBack(script.label, "h1")
        #expect(script.handoff("h1").map(\.isOffer) == [true])
    }

    @Test(
        "this participant's own live restore of a decided round is claimed already-merged; a retained copy of it is offered after the grace"
    )
    func ownRestore() throws {
        var script = Script.watching()
        script.handoff("h1")
        script.claim("h1", by: "other")
        #expect(script.handoff("h1", restoredBy: Script.me).map(\.alreadyMergedCause) == [.mergedBefore])
        var late = Script.watching()
        #expect(late.handoff("h1", retained: true, restoredBy: Script.me).map(\.isOffer) == [true])
        #expect(late.machine.claimableAt(late.label, "h1") == late.now + ClaimStateMachine.restoreGrace)
    }

    @Test("a clear that is not a claim schedules a restore; a restore seen meanwhile cancels it; at most three restores")
    func restores() throws {
        var script = Script.watching()
        let payload = script.envelope("h1").encoded()
        script.handoff("h1")
        guard case .scheduleRestore(_, "h1", payload, _) = script.claim("h1", by: nil).first else {
            Issue.record("no restore scheduled")
            return
        }
        // Another participant's restore arrives first: it stands for this one.
        #expect(script.handoff("h1", restoredBy: "other").isEmpty, "a restore of the open round changes nothing")
        let due = script.machine.restoreIsDue(script.label, "h1", payload: payload)
        #expect(!due)
        for _ in 0..<3 {
            guard case .scheduleRestore = script.claim("h1", by: nil).first else {
                Issue.record("no restore scheduled")
                return
            }
            let due = script.machine.restoreIsDue(script.label, "h1", payload: payload)
            #expect(due)
        }
        guard case .restoreLimitReached = script.claim("h1", by: nil).first else {
            Issue.record("restored more than three times")
            return
        }
        #expect(try script.pendingIDs() == ["h1"], "the round stays open and claimable")
    }

    @Test("an unreadable payload on an open round is dead-lettered without a claim, and the handoff restored over it")
    func unreadableOnOpenRound() throws {
        var script = Script.watching()
        script.handoff("h1")
        let actions = script.machine.unreadableSeen(
            script.label, key: "h1", payload: Data("x".utf8), reason: .malformed, detail: "no header")
        guard actions.count == 2, case .scheduleRestore = actions[0],
            case .deadLetterRejected(_, _, _, .malformed, _, claim: false) = actions[1]
        else {
            Issue.record("unexpected \(actions)")
            return
        }
        let unopened = script.machine.unreadableSeen(
            script.label, key: "h2", payload: Data("x".utf8), reason: .malformed, detail: "no header")
        guard unopened.count == 1, case .deadLetterRejected(_, _, _, _, _, claim: true) = unopened[0] else {
            Issue.record("unexpected \(unopened)")
            return
        }
    }

    @Test("this participant's own handoff is tracked, never offered")
    func ownHandoff() throws {
        var script = Script.watching()
        #expect(script.handoff("h1", from: Script.me).isEmpty)
        #expect(try script.pendingIDs().isEmpty)
        #expect(script.machine.isRoundOpen(script.label, "h1"))
    }

    @Test("a tracked label's waiting handoffs are offered when it is watched later")
    func trackedThenWatched() throws {
        var script = Script()
        #expect(script.machine.label(atLevel: "counter") == script.label)
        #expect(script.handoff("h1").isEmpty, "nobody watches: no notice")
        #expect(script.machine.startWatching(script.label) == .init(available: true))
        #expect(try script.pendingIDs() == ["h1"])
    }

    @Test("a ranked claim: a verdict during its wait answers it unpublished; its turn after a new round answers it lost")
    func rankedWaits() throws {
        var script = Script.watching()
        script.handoff("h1")
        let first = try #require(try script.requestClaim("h1", ranked: true))
        #expect(!script.machine.hasClaimsInFlight(nil), "a ranked wait has nothing in flight")
        #expect(script.claim("h1", by: "other").first?.answered == .init(first, false))
        guard case .none = script.machine.rankedTurn(script.label, "h1", token: first) else {
            Issue.record("published after the verdict")
            return
        }
        script.handoff("h2")
        let second = try #require(try script.requestClaim("h2", ranked: true))
        script.handoff("h2", value: 2)  // a new round with another payload
        guard case .answer(.success(false)) = script.machine.rankedTurn(script.label, "h2", token: second) else {
            Issue.record("published after a new round")
            return
        }
        script.handoff("h3")
        let third = try #require(try script.requestClaim("h3", ranked: true))
        guard case .publish = script.machine.rankedTurn(script.label, "h3", token: third) else {
            Issue.record("not published at its turn")
            return
        }
        #expect(script.machine.hasClaimsInFlight(nil))
        #expect(script.claim("h3", by: Script.me).first?.answered == .init(third, true))
    }

    @Test("unwatching ends ranked waits without a claim")
    func stoppingEndsRankedWaits() throws {
        var script = Script.watching()
        script.handoff("h1")
        let token = try #require(try script.requestClaim("h1", ranked: true))
        #expect(script.machine.beginStopping(script.label).map(\.failedToken) == [token])
        #expect(throws: HandoffError.self) {
            var machine = script.machine
            _ = try machine.startClaim(script.label, "h1", ranked: false)
        }
        let (_, _, unsettled) = script.machine.stopWatching(script.label)
        #expect(unsettled.isEmpty, "nothing was published, nothing to settle")
    }

    @Test("a checkpoint is held until its instance's status releases it; one whose owner handed off is cleared, never merged")
    func checkpoints() throws {
        var script = Script.watching()
        let checkpoint = script.envelope("c1", from: "x", incarnation: 1)
        let key = ClaimStateMachine.checkpointKey("x")
        #expect(
            script.machine.checkpointSeen(
                script.label, instance: "x", envelope: checkpoint, payload: checkpoint.encoded(), restoredBy: nil, retained: true,
                now: script.now
            ).isEmpty, "held")
        #expect(try script.pendingIDs().isEmpty)
        #expect(script.machine.silentInstances(lease: .seconds(30), now: script.now).isEmpty, "no status seen yet")
        _ = script.machine.statusSeen(instance: "x", incarnation: 1, online: true, releasedThrough: 0, now: script.now)
        #expect(script.machine.silentInstances(lease: .seconds(30), now: script.now + .seconds(31)).map(\.instance) == ["x"])
        let released = script.machine.statusSeen(instance: "x", incarnation: 1, online: false, releasedThrough: 1, now: script.now)
        guard released.count == 2, case .releasedCheckpoints("x", 1, false, 1) = released[0], released[1].isOffer else {
            Issue.record("unexpected \(released)")
            return
        }
        #expect(try script.pendingIDs() == ["c1"])
        let token = try #require(try script.requestClaim(key))
        #expect(script.claim(key, by: Script.me).first?.answered == .init(token, true))

        // Instance y handed the label off, then its checkpoint is released: it is cleared.
        let other = script.envelope("c2", from: "y", incarnation: 1)
        script.handoff("h-y", from: "y")
        _ = script.machine.checkpointSeen(
            script.label, instance: "y", envelope: other, payload: other.encoded(), restoredBy: nil, retained: true, now: script.now)
        let cleared = script.machine.statusSeen(instance: "y", incarnation: 1, online: false, releasedThrough: 1, now: script.now)
        #expect(cleared.dropFirst().map(\.alreadyMergedCause) == [.replacedByHandoff])
    }

    @Test("shutting down fails every waiting claim and returns what is unsettled")
    func shutdown() throws {
        var script = Script.watching()
        script.handoff("h1")
        let token = try #require(try script.requestClaim("h1"))
        #expect(script.machine.beginShutdown().isEmpty, "a published claim is not aborted")
        #expect(throws: HandoffError.self) {
            var machine = script.machine
            _ = try machine.startClaim(script.label, "h1", ranked: false)
        }
        let (actions, unsettled) = script.machine.shutDown()
        #expect(actions.map(\.failedToken) == [token])
        #expect(unsettled.unknown.map(\.key) == ["h1"])
        #expect(script.machine.startWatching(script.label).shutDown)
    }

    @Test("keyed: a claim whose signature does not verify is no verdict (the handoff is restored); a signed one decides")
    func signedClaims() throws {
        let keys = try HandoffKeySet(writingKey: HandoffKey(id: "k1", secret: Data(repeating: 7, count: 32)))
        var script = Script()
        script.machine = ClaimStateMachine(instance: Script.me, keys: keys)
        _ = script.machine.startWatching(script.label)
        let envelope = try keys.seal(script.envelope("h1"))
        _ = script.machine.handoffSeen(
            script.label, id: "h1", envelope: envelope, payload: envelope.encoded(), restoredBy: nil, retained: false, now: script.now)
        let topic = "handoff/handoffs/counter/h1"
        let forged = script.machine.claimSeen(
            script.label, key: "h1", topic: topic, claimer: "other", purpose: "merge", signature: "hmac-sha256:k1:00")
        guard case .scheduleRestore = forged.first else {
            Issue.record("a forged claim decided the round: \(forged)")
            return
        }
        #expect(script.machine.winner(script.label, "h1") == nil)
        let mac = try #require(script.machine.roundMAC(script.label, "h1"))
        let signature = keys.claimSignature(topic: topic, claimBy: "other", purpose: "merge", roundMAC: mac)
        _ = script.machine.claimSeen(script.label, key: "h1", topic: topic, claimer: "other", purpose: "merge", signature: signature)
        #expect(script.machine.winner(script.label, "h1") == "other")
    }

    @Test("a handoff being dead-lettered here is not offered, and its claim is not one stopping waits for")
    func deadLettering() throws {
        var script = Script.watching()
        script.handoff("h1")
        script.machine.deadLettering(script.label, "h1", true)
        #expect(try script.pendingIDs().isEmpty)
        #expect(!script.machine.hasClaimsInFlight(nil))
        script.machine.deadLettering(script.label, "h1", false)
        #expect(try script.pendingIDs() == ["h1"], "a failed dead-lettering leaves it waiting")
        #expect(script.claim("h1", by: Script.me, purpose: "dead-letter").isEmpty)
        #expect(try script.machine.startClaim(script.label, "h1", ranked: false) == .decided(false), "nobody merges a dead-letter verdict")
    }

    @Test("over the tracked-bytes limit, the labels nobody watches are dropped; watching one then needs the retained messages")
    func trackingBound() throws {
        var script = Script()
        script.machine = ClaimStateMachine(instance: Script.me, trackedBytesLimit: 10)
        _ = script.machine.label(atLevel: "counter")
        guard case .droppedTrackedLabels(10) = script.handoff("h1").last else {
            Issue.record("not dropped")
            return
        }
        #expect(script.machine.startWatching(script.label) == .init(needsRetained: true))
        script.machine.retainedReadAgain()
        #expect(script.handoff("h1", retained: true).map(\.isOffer) == [true])
    }
}
