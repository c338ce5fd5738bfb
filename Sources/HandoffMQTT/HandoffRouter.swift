import AsyncCompletion
import Foundation
import Handoff
import HandoffClaims
import Logging
import MosquittoClient
import Synchronization

/// The MQTT driver of one participant's ``ClaimStateMachine``: it feeds the machine every message on the prefix's
/// handoff, checkpoint and status topics, in the broker's order, and what its callers ask, and performs the machine's
/// ``ClaimAction``s with the MQTT client (claims, restores, dead letters, notices). It owns what the machine does not:
/// the lock around it, the notice streams, the continuations of claims waiting for their verdict and their timers,
/// and the ordering markers (docs/PROTOCOL.md §6).
final class HandoffRouter: Sendable {
    /// The MQTT 5 content type of handoff messages.
    static let contentType = HandoffProperty.contentType

    typealias Entry = ClaimStateMachine.Entry
    typealias Unsettled = ClaimStateMachine.Unsettled

    /// A claim waiting for its verdict: the caller's completion and the claim's time limit.
    ///
    /// Who answers a claim (its verdict, its time limit, a cancellation, a stop) is decided under the router's lock, by
    /// taking the waiter out of ``State/waiters`` together with the state machine's bookkeeping: a won verdict is never
    /// recorded as answered while the caller was told of a timeout. So the completion's own time limit and cancellation
    /// are not used: the timer and the cancellation handler go through ``HandoffRouter/abandonClaim(_:_:token:error:unpublished:)``.
    struct ClaimWaiter {
        let verdict: Completion<Bool>
        /// The claim's time limit, disarmed when the waiter is resumed.
        let timer: TimeoutClock.Timeout

        func resume(with result: Result<Bool, any Error>) {
            timer.cancel()
            _ = verdict.resume(result)
        }
    }

    struct State {
        var machine: ClaimStateMachine
        /// The notice streams of the watched labels, by label level.
        var notices: [String: AsyncStream<HandoffNotice>.Continuation] = [:]
        /// The claims waiting for their verdict, by the machine's token.
        var waiters: [UInt64: ClaimWaiter] = [:]
        /// The ordering markers in flight and the callers they answer.
        var markers = OrderingMarkers<Completion<Void>>()
    }

    let client: MQTTClient
    let topics: HandoffTopics
    let options: MQTTHandoffTransport.Options
    let origin: HandoffOrigin
    let logger: Logger
    let syncTopic: String
    let state: Mutex<State>
    /// The instances known to be online, which claims are ranked among (docs/PROTOCOL.md §5, "Ranked claims").
    let candidates: ClaimCandidates
    /// The `signature.mac` of the last checkpoints this participant wrote, per label level: what a successor's signed
    /// claim of them binds to.
    let ownCheckpointMACs = Mutex<[String: [String]]>([:])
    /// Where large payloads are routed (see ``route(_:)``), and how many messages wait there.
    private let offloadQueue = DispatchQueue(label: "handoff.router.large-payloads")
    private let offloaded = Mutex(0)
    /// The transport's wildcard filters once subscribed (subscribed again after every reconnect).
    let wildcardFilters = Mutex<[String]>([])
    /// Told, on the network thread, when this participant's own checkpoint of a label was cleared by a message that is
    /// not a claim (docs/PROTOCOL.md §10.6): its next checkpoint is written even if unchanged.
    let ownCheckpointCleared = Mutex<(@Sendable (HandoffLabel) -> Void)?>(nil)
    /// Told, on the network thread, when this participant's ownership of its checkpoints was taken (its own status
    /// released them, or another instance claimed one of them): the checkpoint writer fences those labels.
    let ownershipLost = Mutex<(@Sendable (OwnershipLoss) -> Void)?>(nil)

    /// How this participant learns that successors took over its checkpoints.
    enum OwnershipLoss: Sendable {
        /// Its status (its Will, or a death declared by someone else) released its checkpoints up to `through`.
        case released(through: Int, status: InstanceStatus)
        /// Another instance claimed its checkpoint of `label`.
        case checkpointClaimed(HandoffLabel, by: String)
    }

    /// The MQTT topic of round `key` of `label`.
    func roundTopic(_ label: HandoffLabel, _ key: String) -> String {
        ClaimStateMachine.isCheckpoint(key)
            ? topics.checkpoint(label, instance: ClaimStateMachine.topicLevel(ofKey: key)) : topics.handoff(label, id: key)
    }

    /// The last topic level of round `key`: the handoff id, or the instance of a checkpoint.
    static func topicLevel(ofKey key: String) -> String { ClaimStateMachine.topicLevel(ofKey: key) }

    /// The round key of `envelope` (see ``ClaimStateMachine/key(of:)``).
    func key(of envelope: HandoffEnvelope) -> String { ClaimStateMachine.key(of: envelope) }

    init(client: MQTTClient, topics: HandoffTopics, options: MQTTHandoffTransport.Options, origin: HandoffOrigin, logger: Logger) {
        self.client = client
        self.topics = topics
        self.options = options
        self.origin = origin
        self.logger = logger
        self.syncTopic = topics.sync(instance: origin.instance)
        self.candidates = ClaimCandidates(own: origin.instance)
        self.state = Mutex(
            State(machine: ClaimStateMachine(instance: origin.instance, keys: options.keys, trackedBytesLimit: options.trackedBytesLimit)))
    }

    /// Runs `event` on the machine, under the lock, then performs the actions it returned.
    func handle(_ event: (inout ClaimStateMachine) -> [ClaimAction]) {
        perform(state.withLock { event(&$0.machine) })
    }

    // MARK: - Performing the machine's actions

    func perform(_ actions: [ClaimAction]) {
        for action in actions { perform(action) }
    }

    private func perform(_ action: ClaimAction) {
        switch action {
        case .offer(let label):
            notify(label, .available(label))
        case .claimAlreadyMerged(let label, let key, let mac, let cause):
            clearResurrected(label: label, id: key, mac: mac, why: cause.description)
        case .answerClaim(let token, let result):
            answer(token, result)
        case .scheduleRestore(let label, let key, let payload, let cause):
            restore(label: label, key: key, payload: payload, cause: cause)
        case .restoreLimitReached(let label, let key, let cause):
            logger.error(
                "A waiting handoff keeps being cleared by messages that are not claims; not restoring it again (do the participants' key sets agree?)",
                metadata: Self.restoreMetadata(label, key, cause)
            )
        case .nothingToRestore(let label, let key, let cause):
            logger.debug(
                "A zero-length message on a handoff topic is not a claim; nothing to restore",
                metadata: Self.restoreMetadata(label, key, cause))
        case .deadLetterRejected(let label, let key, let payload, let reason, let detail, let claim):
            let id = Self.topicLevel(ofKey: key)
            Task {
                var disposition = HandoffRejection.Disposition.deadLettered
                do {
                    try await deadLetter(
                        label: label, id: key, payload: payload, reason: reason, detail: detail, claim: claim,
                        timeout: options.operationTimeout)
                    logger.warning(
                        "A message on a handoff topic is not a readable handoff; moved it to the dead letters",
                        metadata: [
                            "handoff.label": "\(label)", "handoff.id": "\(id)", "handoff.reason": "\(reason.rawValue)",
                            "handoff.detail": "\(detail)",
                        ]
                    )
                } catch {
                    disposition = .leftInPlace
                    logger.warning(
                        "Could not dead-letter a rejected handoff; left it in place",
                        metadata: ["handoff.label": "\(label)", "handoff.id": "\(id)", "handoff.error": "\(error)"])
                }
                notify(label, .rejected(HandoffRejection(label: label, id: id, reason: reason, detail: detail, disposition: disposition)))
            }
        case .leaveRejected(let label, let key, let reason, let detail):
            let id = Self.topicLevel(ofKey: key)
            logger.warning(
                reason == .unknownKey
                    ? "Left a handoff signed or encrypted with an unknown key in place" : "Left a handoff of an unknown format in place",
                metadata: ["handoff.label": "\(label)", "handoff.id": "\(id)", "handoff.detail": "\(detail)"]
            )
            notify(label, .rejected(HandoffRejection(label: label, id: id, reason: reason, detail: detail, disposition: .leftInPlace)))
        case .ignoreUnreadableCheckpoint(let label, let instance, let reason):
            logger.debug(
                "Ignored an unreadable checkpoint of a live instance",
                metadata: ["handoff.label": "\(label)", "handoff.instance": "\(instance)", "handoff.reason": "\(reason.rawValue)"]
            )
        case .deadLetterOutcomeUnknown(let entry, let detail):
            Task {
                try? await deadLetter(
                    label: entry.envelope.label, id: entry.key, payload: entry.payload, reason: .claimOutcomeUnknown, detail: detail,
                    timeout: options.operationTimeout
                )
            }
        case .droppedTrackedLabels(let limit):
            logger.info(
                "Dropped the handoffs held for labels nobody here watches, to stay within the bound; a label watched later reads them again",
                metadata: ["handoff.tracked_bytes_limit": "\(limit)"]
            )
        case .releasedCheckpoints(let instance, let through, let online, let labels):
            logger.info(
                "An instance released its checkpoints",
                metadata: [
                    "handoff.instance": "\(instance)", "handoff.incarnation": "\(through)",
                    "handoff.state": "\(online ? InstanceStatus.State.online.rawValue : InstanceStatus.State.dead.rawValue)",
                    "handoff.labels": "\(labels)",
                ]
            )
        }
    }

    /// Resumes the claim waiting under `token`, if it still waits.
    func answer(_ token: UInt64, _ result: Result<Bool, any Error>) {
        state.withLock { $0.waiters.removeValue(forKey: token) }?.resume(with: result)
    }

    private func notify(_ label: HandoffLabel, _ notice: HandoffNotice) {
        state.withLock { $0.notices[label.topicLevel] }?.yield(notice)
    }

    // MARK: - Watching

    /// Starts watching `label`. Returns its notices, and whether the retained messages must be read again (the
    /// tracked labels' state was dropped to stay within its bound, and this label's with it): the transport then
    /// subscribes its wildcard again.
    func startWatching(_ label: HandoffLabel) -> (notices: AsyncStream<HandoffNotice>, needsRetained: Bool) {
        let (stream, continuation) = AsyncStream.makeStream(of: HandoffNotice.self)
        let (previous, start) = state.withLock { state -> (AsyncStream<HandoffNotice>.Continuation?, ClaimStateMachine.WatchStart) in
            let start = state.machine.startWatching(label)
            guard !start.shutDown else { return (nil, start) }
            // Watching a label again replaces its stream only: what it has seen, and won, stays.
            return (state.notices.updateValue(continuation, forKey: label.topicLevel), start)
        }
        if start.shutDown { continuation.finish() }
        previous?.finish()
        if start.available { continuation.yield(.available(label)) }
        return (stream, start.needsRetained)
    }

    /// The retained messages were read again (the wildcard subscribed again and synced): every label is tracked anew.
    func retainedReadAgain() {
        state.withLock { $0.machine.retainedReadAgain() }
    }

    /// Stops watching `label` once the verdicts of this participant's claims for it have arrived (at most
    /// `timeout`); returns the handoffs it won and did not hand out, and the claims still without a verdict. Its stream
    /// finishes, claims still waiting fail with ``HandoffError/notSubscribed(_:)``; the label stays tracked.
    ///
    /// Call it from a task that is not cancelled: it waits for the broker.
    func stopWatching(_ label: HandoffLabel, settlingWithin timeout: Duration) async -> Unsettled {
        handle { $0.beginStopping(label) }
        await awaitVerdicts(of: [label.topicLevel], timeout: timeout)
        let (notices, actions, unsettled) = state.withLock { state in
            let (wasWatched, actions, unsettled) = state.machine.stopWatching(label)
            return (wasWatched ? state.notices.removeValue(forKey: label.topicLevel) : nil, actions, unsettled)
        }
        notices?.finish()
        perform(actions)
        return unsettled
    }

    /// Waits, at most `timeout`, until no merge claim of this participant for the labels `levels` (every watched
    /// label when `nil`) waits for its verdict. One ordering marker usually does it: the broker orders the marker
    /// after every claim sent before it (A3), so once the marker is back, so are those claims, and their rounds'
    /// verdicts (each at or before this participant's own claim) have been routed.
    private func awaitVerdicts(of levels: Set<String>?, timeout: Duration) async {
        let deadline = ContinuousClock.now + timeout
        while state.withLock({ $0.machine.hasClaimsInFlight(levels) }) {
            let remaining = ContinuousClock.now.duration(to: deadline)
            guard remaining > .zero, !Task.isCancelled else { return }
            do {
                try await sync(timeout: remaining)
            } catch {
                // Not connected (the marker could not go out): try again shortly, until the deadline.
                if (error as? HandoffError)?.code == .shutdown { return }
                try? await Task.sleep(for: min(.milliseconds(50), remaining))
            }
        }
    }

    /// Publishes a handoff this participant won, and will not merge, again as it was received: retained, a new
    /// round, waiting for any participant (docs/PROTOCOL.md §5, "Stopping"). Its verdict is forgotten here first,
    /// so that this participant, if it still watches the label, takes the new round for a waiting handoff and
    /// not for one it merged before.
    func returnHandoff(label: HandoffLabel, id: String, payload: Data, timeout: Duration) async throws {
        state.withLock { $0.machine.givingBack(label, id) }
        let properties = MQTTPublishProperties(messageExpiry: options.handoffExpiry, contentType: Self.contentType)
        let (client, topic, arbiter, prefix) = (
            self.client, roundTopic(label, id), key(isArbitrated: id) ? options.arbiter : nil, topics.prefix
        )
        try await withDeadline(timeout, operation: "return handoff '\(label)'/\(id)") {
            try await arbiter?.store(prefix: prefix, label: label, id: id, payload: payload)
            try await client.publish(topic, payload: payload, qos: .atLeastOnce, retain: true, properties: properties)
        }
    }

    func pending(_ label: HandoffLabel) throws -> [HandoffEnvelope] {
        try state.withLock { try $0.machine.pending(label) }
    }

    func rawPayload(of envelope: HandoffEnvelope) -> Data {
        state.withLock { $0.machine.payload(envelope.label, key(of: envelope)) } ?? envelope.encoded()
    }

    // MARK: - Routing (one task, in the broker's order)

    /// Routes `message`, on libmosquitto's network thread, in the order received. A large payload (its SHA-256, and
    /// with keys its decryption, take milliseconds) is routed on a queue of its own instead, and the messages after it
    /// wait behind it there, so that the order holds while the network thread goes on reading the socket.
    func route(_ message: MQTTMessage) {
        let inline = offloaded.withLock { queued in
            guard queued > 0 || message.payload.count >= Self.offloadedPayloadSize else { return true }
            queued += 1
            return false
        }
        guard !inline else { return routeInOrder(message) }
        offloadQueue.async { [self] in
            routeInOrder(message)
            offloaded.withLock { $0 -= 1 }
        }
    }

    /// Payloads from this size on are read off the network thread.
    static let offloadedPayloadSize = 256 * 1024

    private func routeInOrder(_ message: MQTTMessage) {
        if message.topic == syncTopic {
            markerDone(String(decoding: message.payload, as: UTF8.self), .success(()))
            return
        }
        if let (labelLevel, id) = topics.parseHandoff(message.topic) {
            guard let label = state.withLock({ $0.machine.label(atLevel: labelLevel) }) else { return }
            if message.payload.isEmpty {
                routeClaim(label: label, id: String(id), topic: message.topic, properties: message.properties)
            } else {
                routeHandoff(
                    label: label, id: String(id), payload: message.payload, properties: message.properties, retained: message.retain)
            }
        } else if let (labelLevel, instance) = topics.parseCheckpoint(message.topic) {
            guard let label = state.withLock({ $0.machine.label(atLevel: labelLevel) }) else { return }
            routeCheckpoint(label: label, instance: String(instance), message: message)
        } else if let instance = topics.parseInstance(message.topic) {
            routeStatus(instance: String(instance), payload: message.payload)
        }
    }

    func routeHandoff(label: HandoffLabel, id: String, payload: Data, properties: MQTTPublishProperties, retained: Bool) {
        do {
            let envelope = try HandoffEnvelope.read(
                payload, topicLabel: label, topicID: id, keys: options.keys, maximumSize: options.maximumPayloadSize)
            let restoredBy = properties.userProperty(HandoffProperty.restoreBy)
            handle {
                $0.handoffSeen(label, id: id, envelope: envelope, payload: payload, restoredBy: restoredBy, retained: retained, now: .now)
            }
        } catch {
            handle { $0.unreadableSeen(label, key: id, payload: payload, reason: error.reason, detail: error.detail) }
        }
    }

    /// A handoff this participant already merged is waiting again: the broker lost the clear (it saves after
    /// acknowledging, so a crash in between brings the retained message back). Claim it at once as
    /// `already-merged`, a claim that nobody merges, so that it is not merged a second time.
    func clearResurrected(label: HandoffLabel, id: String, mac: String?, why: String) {
        logger.info("\(why)", metadata: ["handoff.label": "\(label)", "handoff.id": "\(id)"])
        let (client, topic) = (self.client, roundTopic(label, id))
        let properties = claimProperties(topic: topic, purpose: "already-merged", roundMAC: mac)
        Task {
            try? await client.publish(topic, payload: Data(), qos: .atLeastOnce, retain: true, properties: properties)
        }
    }

    func routeClaim(label: HandoffLabel, id: String, topic: String, properties: MQTTPublishProperties) {
        let (claimer, purpose, signature) = (
            properties.userProperty(HandoffProperty.claimBy), properties.userProperty(HandoffProperty.claimPurpose),
            properties.userProperty(HandoffProperty.claimSignature)
        )
        handle { $0.claimSeen(label, key: id, topic: topic, claimer: claimer, purpose: purpose, signature: signature) }
    }

    // MARK: - Claiming

    func claim(_ envelope: HandoffEnvelope, timeout: Duration) async throws -> Bool {
        let label = envelope.label
        let id = key(of: envelope)
        if let arbiter = options.arbiter, key(isArbitrated: id) { return try await claimThroughArbiter(envelope, arbiter) }
        let topic = roundTopic(label, id)
        // A round opened by a restore waits out its grace first (docs/PROTOCOL.md §10.6).
        if let claimableAt = state.withLock({ $0.machine.claimableAt(label, id) }), claimableAt > .now {
            try await Task.sleep(until: claimableAt)
        }
        // Ranked claims (docs/PROTOCOL.md §5): below the first rank, the claim waits its turn before it is published.
        let rankedDelay = rankedDelay(for: envelope, timeout: timeout)
        let start = try state.withLock { try $0.machine.startClaim(label, id, ranked: rankedDelay > .zero) }
        guard case .claim(let token, let mac) = start else {
            if case .decided(let won) = start { return won }
            return false
        }
        let properties = claimProperties(topic: topic, purpose: "merge", roundMAC: mac)
        do {
            // The caller's task waits for the verdict itself (no task in between: the verdict resumes it directly);
            // the time limit is kept by the shared TimeoutClock.
            let verdict = Completion<Bool>()
            let timer = TimeoutClock.shared.schedule(after: timeout) { [self] in
                // Like a cancellation, a timeout leaves the handoff marked as claimed: the verdict decides.
                abandonClaim(label, id, token: token, error: HandoffError.timeout(operation: "claim", after: timeout))
            }
            let cancelled = Task.isCancelled
            let (registration, superseded) = state.withLock { state -> (ClaimStateMachine.ClaimRegistration, ClaimWaiter?) in
                let registration = state.machine.registerClaim(label, id, token: token, cancelled: cancelled)
                guard case .waiting(let superseded) = registration else { return (registration, nil) }
                state.waiters[token] = ClaimWaiter(verdict: verdict, timer: timer)
                return (registration, superseded.flatMap { state.waiters.removeValue(forKey: $0) })
            }
            // (Only one claim of a topic is in flight at a time; should another one have been, it is answered.)
            superseded?.resume(
                with: .failure(
                    HandoffError.claimOutcomeUnknown(
                        label: label, id: envelope.id, detail: "a newer claim of the same topic took its place")))
            switch registration {
            case .shutDown:
                timer.cancel()
                throw HandoffError.shutdown
            case .cancelled:
                timer.cancel()
                throw CancellationError()
            case .decided(let won):
                timer.cancel()
                return won
            case .waiting: break
            }
            if rankedDelay > .zero {
                // Published when its turn comes, unless the verdict (or a cancellation, a stop) answers it first.
                _ = TimeoutClock.shared.schedule(after: rankedDelay) { [self] in
                    publishRankedClaim(topic: topic, token: token, label: label, id: id, properties: properties)
                }
            } else {
                // The clear is published after the waiter is registered: the verdict cannot be missed.
                // Nobody waits for its PUBACK: only a failure matters.
                client.publish(topic, payload: Data(), qos: .atLeastOnce, retain: true, properties: properties) { [self] result in
                    guard case .failure(let error) = result else { return }
                    // The clear did not go out: the handoff is still waiting and may be claimed again.
                    abandonClaim(label, id, token: token, error: error, unpublished: true)
                }
            }
            return try await withTaskCancellationHandler {
                try await verdict.wait(timeLimit: nil, cancellable: false)
            } onCancel: {
                self.abandonClaim(label, id, token: token, error: CancellationError())
            }
        } catch let error as HandoffError where error.code == .timeout {
            // The verdict may still come: if this participant wins, the handoff is offered again by pending().
            throw HandoffError.claimOutcomeUnknown(
                label: label, id: envelope.id,
                detail: "no verdict within \(timeout); if this participant wins, the next complete() returns it"
            )
        } catch let error as MQTTError {
            throw HandoffError.transportUnavailable("Could not claim handoff '\(label)'/\(id): \(error)", underlying: error)
        }
    }

    /// Gives up waiting for the verdict of the claim `token` (the verdict is still recorded when it comes). A ranked
    /// claim still waiting for its turn is not published at all; `unpublished`: the claim did not go out.
    func abandonClaim(_ label: HandoffLabel, _ id: String, token: UInt64, error: any Error, unpublished: Bool = false) {
        let waiter = state.withLock { state -> ClaimWaiter? in
            guard state.machine.claimAbandoned(label, id, token: token, unpublished: unpublished) else { return nil }
            return state.waiters.removeValue(forKey: token)
        }
        waiter?.resume(with: .failure(error))
    }

    // MARK: - Dead letters

    /// Moves a handoff to its dead-letter topic (retained, with the reason), then claims it so it stops waiting.
    ///
    /// `claim: false` stores the dead letter only: for an unreadable payload published on the topic of a round that
    /// is open, whose waiting handoff must stay claimable by those who saw it (docs/PROTOCOL.md §7); the next claim
    /// of that round clears the payload from the broker.
    func deadLetter(
        label: HandoffLabel, id: String, payload: Data, reason: HandoffRejection.Reason, detail: String, claim: Bool = true,
        timeout: Duration
    ) async throws {
        let deadProperties = MQTTPublishProperties(userProperties: [
            MQTTUserProperty(HandoffProperty.deadReason, reason.rawValue),
            MQTTUserProperty(HandoffProperty.deadDetail, HandoffRejection.truncatedDetail(detail)),
            MQTTUserProperty(HandoffProperty.deadBy, origin.instance),
            MQTTUserProperty(HandoffProperty.deadAt, RFC3339.format(Date())),
            MQTTUserProperty(HandoffProperty.deadTopic, roundTopic(label, id)),
        ])
        let roundMAC = state.withLock { $0.machine.roundMAC(label, id) }
        let claimProperties = claimProperties(topic: roundTopic(label, id), purpose: "dead-letter", roundMAC: roundMAC)
        // With an arbiter, the store lets go of it too (a claimer that takes it anyway merges it: the dead letter is then a
        // redundant copy, as with a lost dead-letter claim).
        if claim, let arbiter = options.arbiter, key(isArbitrated: id) {
            try? await arbiter.remove(prefix: topics.prefix, label: label, id: id)
        }
        // While it is being dead-lettered, it is not offered again.
        if claim { state.withLock { $0.machine.deadLettering(label, id, true) } }
        let (client, deadTopic, roundTopic) = (self.client, topics.deadLetter(label, id: Self.topicLevel(ofKey: id)), roundTopic(label, id))
        do {
            try await withDeadline(timeout, operation: "dead-letter '\(label)'/\(id)") {
                try await client.publish(deadTopic, payload: payload, qos: .atLeastOnce, retain: true, properties: deadProperties)
                // Only once the dead letter is stored is the handoff taken out of the waiting ones.
                guard claim else { return }
                try await client.publish(roundTopic, payload: Data(), qos: .atLeastOnce, retain: true, properties: claimProperties)
            }
        } catch {
            if claim { state.withLock { $0.machine.deadLettering(label, id, false) } }
            throw error
        }
        logger.debug(
            "Handoff moved to dead letters",
            metadata: [
                "handoff.label": "\(label)", "handoff.id": "\(id)", "handoff.reason": "\(reason.rawValue)", "handoff.detail": "\(detail)",
            ]
        )
    }

    /// The dead letters stored for `label`: subscribes to its dead-letter topics, reads the retained
    /// messages up to a sync marker, unsubscribes.
    func collectDeadLetters(_ label: HandoffLabel, timeout: Duration) async throws -> [DeadLetter] {
        let (client, topics, syncTopic) = (self.client, self.topics, self.syncTopic)
        return try await withDeadline(timeout, operation: "read dead letters of '\(label)'") {
            let messages = client.messages()
            let filter = topics.deadLetterFilter(label)
            let topicPrefix = filter.dropLast()
            try await client.subscribe(filter, options: MQTTSubscribeOptions(qos: .atLeastOnce))
            let nonce = "dead-letters-\(UUID().uuidString)"
            try await client.publish(syncTopic, payload: Data(nonce.utf8), qos: .atLeastOnce)
            var letters: [DeadLetter] = []
            for await message in messages {
                if message.topic == syncTopic, message.payload == Data(nonce.utf8) { break }
                guard message.topic.hasPrefix(topicPrefix), !message.payload.isEmpty else { continue }
                letters.append(DeadLetter(label: label, topicID: String(message.topic.dropFirst(topicPrefix.count)), message: message))
            }
            try? await client.unsubscribe(filter)
            return letters.sorted { $0.id < $1.id }
        }
    }

    // MARK: - Ordering markers

    /// Returns once every message the broker queued for this participant before now has been routed (see
    /// ``OrderingMarkers``: callers that arrive while a marker is in flight share the next one).
    func sync(timeout: Duration) async throws {
        let answered = Completion<Void>()
        switch state.withLock({ $0.markers.request(answered) }) {
        case .shutDown: _ = answered.resume(throwing: HandoffError.shutdown)
        case .publish(let nonce): publishMarker(nonce)
        case .armFlush:
            // Progress even if the marker in flight is slow or lost.
            _ = TimeoutClock.shared.schedule(after: .milliseconds(50)) { [self] in
                if let next = state.withLock({ $0.markers.flush() }) { publishMarker(next) }
            }
        case .wait: break
        }
        // A marker answering after the time limit resumes a completion that is finished already: nothing happens.
        try await answered.wait(timeLimit: timeout) { HandoffError.timeout(operation: "sync with the broker", after: timeout) }
    }

    private func publishMarker(_ nonce: String) {
        client.publish(syncTopic, payload: Data(nonce.utf8), qos: .atLeastOnce) { [self] result in
            guard case .failure(let error) = result else { return }
            markerDone(nonce, .failure(error))
        }
    }

    /// A marker came back (or could not be sent): answer its callers, and send the next one for the queued.
    private func markerDone(_ nonce: String, _ result: Result<Void, any Error>) {
        let (waiters, next) = state.withLock { $0.markers.done(nonce) }
        for waiter in waiters { _ = waiter.resume(result) }
        if let next { publishMarker(next) }
    }

    // MARK: - Connection changes

    func connectionChanged(_ event: MQTTConnectionEvent) {
        guard case .connected(let sessionPresent, reconnect: true) = event else { return }
        // The statuses are read again after every connect: a status removed meanwhile must not stay a claim candidate.
        candidates.reset()
        state.withLock { $0.machine.reconnected(now: .now) }
        guard !sessionPresent else {
            // The broker kept the session, but if it restarted from its store, a handoff cleared after its
            // last save is back as a retained message that a kept subscription does not deliver again.
            // Subscribing again asks for the retained messages: what is really waiting is seen again.
            subscribeAgain()
            return
        }
        // The broker kept no session: what was published while we were away is lost to us, and the verdicts of claims
        // in flight may be among it. The machine forgets every round; claims in flight are dead-lettered.
        let (actions, claimsInFlight) = state.withLock { $0.machine.sessionLost() }
        // The client restored the subscriptions before this ran, so their retained messages may have been routed
        // and just forgotten: subscribing again sends them again, now that nothing is left to forget.
        subscribeAgain()
        logger.warning("Broker session lost; waiting handoffs are read again", metadata: ["handoff.claims_in_flight": "\(claimsInFlight)"])
        perform(actions)
    }

    /// Subscribes again to the transport's wildcard filters (once a label was watched), handoffs before checkpoints,
    /// so that their retained messages are delivered again. (The instance statuses are subscribed
    /// again by the announcement that follows every connect.)
    private func subscribeAgain() {
        let filters = wildcardFilters.withLock { $0 }
        let client = self.client
        Task {
            for filter in filters {
                _ = try? await client.subscribe(filter, options: MQTTSubscribeOptions(qos: .atLeastOnce))
            }
        }
    }

    /// Ends the router: waits (at most `timeout`) for the verdicts of this participant's claims in flight, then
    /// finishes every stream and fails every waiting call with ``HandoffError/shutdown``. Returns the handoffs
    /// won and not handed out, and the claims still without a verdict, of every watched label.
    ///
    /// Call it from a task that is not cancelled: it waits for the broker.
    func shutDown(settlingWithin timeout: Duration) async -> Unsettled {
        handle { $0.beginShutdown() }
        await awaitVerdicts(of: nil, timeout: timeout)
        let (notices, actions, unsettled, waiters, syncs) = state.withLock { state in
            let (actions, unsettled) = state.machine.shutDown()
            defer { state.notices = [:] }
            return (Array(state.notices.values), actions, unsettled, state.waiters, state.markers.shutDown())
        }
        for notices in notices { notices.finish() }
        perform(actions)
        // (Every waiter is the machine's and answered above; one answered meanwhile is not resumed twice.)
        for token in waiters.keys { answer(token, .failure(HandoffError.shutdown)) }
        for answered in syncs { _ = answered.resume(throwing: HandoffError.shutdown) }
        return unsettled
    }
}

extension DeadLetter {
    /// A dead letter read back from its retained message.
    init(label: HandoffLabel, topicID: String, message: MQTTMessage) {
        let properties = message.properties
        // Any RFC 3339 date-time: other implementations may write another form (docs/PROTOCOL.md §7).
        let rejectedAt = properties.userProperty(HandoffProperty.deadAt).flatMap(RFC3339.parse)
        self.init(
            label: label,
            id: topicID,
            reason: properties.userProperty(HandoffProperty.deadReason).flatMap(HandoffRejection.Reason.init(rawValue:)) ?? .malformed,
            detail: properties.userProperty(HandoffProperty.deadDetail) ?? "",
            rejectedBy: properties.userProperty(HandoffProperty.deadBy) ?? "",
            rejectedAt: rejectedAt ?? Date(timeIntervalSince1970: 0),
            payload: message.payload
        )
    }
}
