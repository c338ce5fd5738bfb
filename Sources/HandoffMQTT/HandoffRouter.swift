import Foundation
import Handoff
import Logging
import MosquittoClient
import Synchronization

/// The claim state machine of one MQTT participant: it sees every message on the watched labels' handoff
/// topics, in the broker's order, and decides claims exactly as docs/PROTOCOL.md specifies:
///
/// - a non-empty message on `{prefix}/handoffs/{label}/{id}` is a waiting handoff (a new round for that topic);
/// - a zero-length message there carrying `handoff-claim-by` is a claim; the FIRST claim seen after the
///   handoff wins, every later one loses; zero-length messages without that property are ignored.
///
/// Every participant sees the same order on a single-node broker, so every participant agrees on the winner.
///
/// Checkpoints (`{prefix}/checkpoints/{label}/{instance}`, docs/PROTOCOL.md §9) follow the same rule once their
/// instance's status releases them; until then they are held. Rounds are kept by **key**: a handoff's id, or
/// `@` + the instance for a checkpoint (`@` is not an id character, so the two never collide).
final class HandoffRouter: Sendable {
    /// The MQTT 5 content type of handoff messages.
    static let contentType = HandoffProperty.contentType
    /// The claim purposes whose verdict nobody merges (docs/PROTOCOL.md §5).
    static let unmergedPurposes: Set<String> = ["dead-letter", "already-merged"]

    struct Entry: Sendable {
        /// Its round key: the handoff id, or `@` + the instance of a checkpoint.
        var key: String
        var envelope: HandoffEnvelope
        /// The payload exactly as received (what a dead letter stores).
        var payload: Data
        /// A claim of ours is in flight for it (a merge claim, or the claim that ends a dead-lettering).
        var claiming = false
        /// It is being dead-lettered by this participant: its claim is not one whose verdict must be awaited.
        var deadLettering = false
        /// Its round was opened by a restore (docs/PROTOCOL.md §10.6): not to be claimed for merging before then.
        var claimableAt: ContinuousClock.Instant?
        /// It arrived as a retained message (or from a claim arbiter's list), not live.
        var wasRetained = false
        /// The token of this participant's ranked merge claim that waits for its turn, not yet published
        /// (docs/PROTOCOL.md §5, "Ranked claims"); a new payload (a new round) drops it, which ends the wait.
        var rankedWait: UInt64?
    }

    /// An open round of one topic: a readable handoff (or released or held checkpoint) seen, no verdict yet.
    struct Round {
        /// The payload as received, to restore it after a clear that is not a claim; `nil` for this participant's own.
        var payload: Data?
        /// The envelope's `signature.mac`, which signed claims of the round bind to (docs/PROTOCOL.md §10.5).
        var mac: String?
        /// Restores this participant published for the round (at most ``HandoffRouter/maximumRestores``).
        var restores = 0
        /// A restore is due after its random delay; a restore seen in the meantime cancels it.
        var restoreDue = false
    }

    /// What a participant that stops watching still holds and nobody else will: handoffs it won but did not hand
    /// to a caller, and merge claims whose verdict it never saw (docs/PROTOCOL.md §5, "Stopping").
    struct Unsettled: Sendable {
        /// Won (the verdict names this participant), not merged: to be returned to the waiting handoffs.
        var won: [Entry] = []
        /// Claimed, no verdict seen: the outcome is unknown, to be dead-lettered as `claim-outcome-unknown`.
        var unknown: [Entry] = []

        var isEmpty: Bool { won.isEmpty && unknown.isEmpty }
    }

    /// One label seen on the transport's wildcard subscription: watched (a caller reads its notices and claims), or
    /// only tracked (`continuation` nil: nobody here watches it yet, but its waiting handoffs and rounds are kept, so
    /// that watching it later needs no subscription of its own).
    struct Watched {
        let label: HandoffLabel
        var continuation: AsyncStream<HandoffNotice>.Continuation?
        /// Whether a caller watches the label (not only tracked).
        var isWatched: Bool { continuation != nil }
        /// Handoffs waiting, by id: seen, not yet claimed by anyone.
        var pending: [String: Entry] = [:]
        /// Handoffs this participant won whose claim() caller had given up (timeout, reconnect): handed out next time.
        var won: [String: Entry] = [:]
        /// Topics (by id) whose round is open: the handoff was seen, no claim yet. Claims on a topic whose
        /// round this participant did not see open (it subscribed after the first claim) are not verdicts.
        var openRounds: [String: Round] = [:]
        /// Winners of recent rounds, by id, to answer late claim() calls.
        var verdicts: [String: Verdict] = [:]
        var verdictOrder: [String] = []
        /// Being unwatched: waiting for the verdicts of claims in flight; no new claim starts.
        var stopping = false
        /// Checkpoints of instances that have not released them, by key: the latest one of each (docs/PROTOCOL.md §9).
        var held: [String: Entry] = [:]
        /// Instances whose handoff of this label was seen: it replaces their checkpoint of the label, which is then
        /// cleared, never merged (a successor never merges both).
        var handedOffBy: Set<String> = []

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

        mutating func record(verdict: Verdict, for id: String) {
            verdicts[id] = verdict
            verdictOrder.append(id)
            if verdictOrder.count > 20_000 {
                for old in verdictOrder.prefix(10_000) { verdicts[old] = nil }
                verdictOrder.removeFirst(10_000)
            }
        }
    }

    /// The first claim of a round: who won, and whether to merge it, dead-letter it, or nothing (`already-merged`).
    struct Verdict: Sendable, Hashable {
        var winner: String
        var merging: Bool
        var alreadyMerged = false

        /// Whether the round's handoff was merged by `instance` (or found merged before, and cleared by it): a new
        /// round of the same payload is then a resurrection or a stale restore, to be claimed `already-merged`.
        func merged(by instance: String) -> Bool {
            winner == instance && (merging || alreadyMerged)
        }
    }

    struct ClaimWaiter {
        var token: UInt64
        var continuation: CheckedContinuation<Bool, any Error>
        /// The claim's time limit, disarmed when the waiter is resumed.
        var timer: TimeoutClock.Timeout
        /// The label level and round key claimed (to end a ranked wait, see ``Entry/rankedWait``).
        var level = ""
        var key = ""

        func resume(with result: Result<Bool, any Error>) {
            timer.cancel()
            continuation.resume(with: result)
        }
    }

    struct State {
        var watched: [String: Watched] = [:]
        var claims: [String: ClaimWaiter] = [:]
        /// Ordering markers in flight, by nonce, with the callers each one answers.
        var syncs: [String: [CheckedContinuation<Void, any Error>]] = [:]
        /// The marker whose echo will release the queued callers (nil: none in flight).
        var syncInFlight: String?
        /// Callers that arrived while a marker was in flight: they share the next one.
        var syncQueued: [CheckedContinuation<Void, any Error>] = []
        var nextToken: UInt64 = 1
        var shutDown = false
        /// Shutting down: waiting for the verdicts of claims in flight; no new claim starts.
        var stopping = false
        /// Payload bytes held for labels only tracked, not watched (bounded by ``MQTTHandoffTransport/Options/trackedBytesLimit``).
        var trackedBytes = 0
        /// The tracked labels' state was dropped to stay within the bound: watching a label that has no state here
        /// needs the retained messages again (the wildcard is subscribed again).
        var trackingIncomplete = false
        /// Per other instance: its checkpoints written at an incarnation up to this one are released.
        var releasedThrough: [String: Int] = [:]
        /// Per other instance: its latest status, and when this participant last heard from it (a birth or a
        /// heartbeat, or its own reconnect: it could not hear while disconnected).
        var lastStatus: [String: InstanceStatus] = [:]
        var lastHeard: [String: ContinuousClock.Instant] = [:]

        /// Runs `body` on a watched label's state in place; `nil` when the label is not watched.
        ///
        /// Copying a `Watched` out of the dictionary and writing it back would copy its dictionaries on every
        /// change (they are shared while two copies exist): a cost that grew with every verdict recorded.
        mutating func modifyWatched<R>(_ level: String, _ body: (inout Watched) throws -> R) rethrows -> R? {
            guard let index = watched.index(forKey: level) else { return nil }
            return try body(&watched.values[index])
        }
    }

    let client: MQTTClient
    let topics: HandoffTopics
    let options: MQTTHandoffTransport.Options
    let origin: HandoffOrigin
    let logger: Logger
    let syncTopic: String
    let state = Mutex(State())
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
    /// For tests: called by claim() between deciding to claim and registering its waiter, with the topic.
    let claimWillRegister = Mutex<(@Sendable (String) -> Void)?>(nil)
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
        key.hasPrefix("@") ? topics.checkpoint(label, instance: String(key.dropFirst())) : topics.handoff(label, id: key)
    }

    /// The last topic level of round `key`: the handoff id, or the instance of a checkpoint.
    static func topicLevel(ofKey key: String) -> String {
        key.hasPrefix("@") ? String(key.dropFirst()) : key
    }

    /// The round key of `envelope`: a checkpoint (it has an incarnation, and its topic names its origin's instance)
    /// or a handoff (read from a handoff topic, where an incarnation is dropped).
    func key(of envelope: HandoffEnvelope) -> String {
        envelope.incarnation == nil ? envelope.id.rawValue : "@" + envelope.origin.instance
    }

    init(client: MQTTClient, topics: HandoffTopics, options: MQTTHandoffTransport.Options, origin: HandoffOrigin, logger: Logger) {
        self.client = client
        self.topics = topics
        self.options = options
        self.origin = origin
        self.logger = logger
        self.syncTopic = topics.sync(instance: origin.instance)
        self.candidates = ClaimCandidates(own: origin.instance)
    }

    // MARK: - Watching

    /// Starts watching `label`. Returns its notices, and whether the retained messages must be read again (the
    /// tracked labels' state was dropped to stay within its bound, and this label's with it): the transport then
    /// subscribes its wildcard again.
    func startWatching(_ label: HandoffLabel) -> (notices: AsyncStream<HandoffNotice>, needsRetained: Bool) {
        let (stream, continuation) = AsyncStream.makeStream(of: HandoffNotice.self)
        let (previous, available, needsRetained) = state.withLock { state -> (AsyncStream<HandoffNotice>.Continuation?, Bool, Bool) in
            if state.shutDown {
                continuation.finish()
                return (nil, false, false)
            }
            // Watching a label again, or one tracked so far, replaces its stream only: what it has seen, and won, stays.
            guard let index = state.watched.index(forKey: label.topicLevel) else {
                state.watched[label.topicLevel] = Watched(label: label, continuation: continuation)
                return (nil, false, state.trackingIncomplete)
            }
            let watched = state.watched.values[index]
            if !watched.isWatched { state.trackedBytes -= Self.payloadBytes(of: watched) }
            state.watched.values[index].continuation = continuation
            state.watched.values[index].stopping = false
            return (watched.continuation, !watched.pending.isEmpty || !watched.won.isEmpty, false)
        }
        previous?.finish()
        if available { continuation.yield(.available(label)) }
        return (stream, needsRetained)
    }

    /// The payload bytes a label's state holds (what tracking it costs).
    static func payloadBytes(of watched: Watched) -> Int {
        watched.pending.values.reduce(0) { $0 + $1.payload.count } + watched.held.values.reduce(0) { $0 + $1.payload.count }
    }

    /// The state of a label seen on the wildcard subscription that nobody here watches: created to track it.
    private static func tracked(_ state: inout State, level: Substring) -> HandoffLabel? {
        if let label = state.watched[String(level)]?.label { return label }
        // A level that is not a label's canonical encoding (docs/PROTOCOL.md §3) can be nobody's: ignored.
        guard !state.shutDown, let label = try? HandoffLabel(topicLevel: String(level)) else { return nil }
        state.watched[label.topicLevel] = Watched(label: label, continuation: nil)
        return label
    }

    /// Keeps the payloads held for tracked labels within `limit` bytes: over it, they are dropped (the labels' rounds
    /// stay), and a label watched later reads the retained messages again.
    func boundTracking(_ state: inout State, adding bytes: Int) {
        state.trackedBytes += bytes
        guard state.trackedBytes > options.trackedBytesLimit else { return }
        var total = 0
        for watched in state.watched.values where !watched.isWatched { total += Self.payloadBytes(of: watched) }
        state.trackedBytes = total
        guard total > options.trackedBytesLimit else { return }
        for level in Array(state.watched.keys) where !(state.watched[level]?.isWatched ?? true) {
            state.watched[level] = nil
        }
        state.trackedBytes = 0
        state.trackingIncomplete = true
        logger.info(
            "Dropped the handoffs held for labels nobody here watches, to stay within the bound; a label watched later reads them again",
            metadata: ["handoff.tracked_bytes_limit": "\(options.trackedBytesLimit)"]
        )
    }

    /// The retained messages were read again (the wildcard subscribed again and synced): every label is tracked anew.
    func retainedReadAgain() {
        state.withLock { $0.trackingIncomplete = false }
    }

    /// Stops watching `label` at once: its stream finishes, claims waiting for a verdict fail with
    /// ``HandoffError/notSubscribed(_:)``. Returns what this participant still held for the label.
    ///
    /// The label stays tracked (the wildcard subscription goes on): its waiting handoffs and rounds are kept, without
    /// what this participant won or claimed, which the caller settles.
    private func stopWatching(_ label: HandoffLabel) -> Unsettled {
        let prefixes = [topics.handoffFilter(label).dropLast(), topics.checkpointFilter(label).dropLast()]
        let (watched, waiters) = state.withLock { state -> (Watched?, [ClaimWaiter]) in
            let topics = state.claims.keys.filter { topic in prefixes.contains { topic.hasPrefix($0) } }
            let waiters = topics.compactMap { state.claims.removeValue(forKey: $0) }
            guard let index = state.watched.index(forKey: label.topicLevel), state.watched.values[index].isWatched else { return (nil, waiters) }
            let watched = state.watched.values[index]
            // Tracked from now on: what was won or claimed here is settled by the caller, the rest stays known.
            state.watched.values[index].continuation = nil
            state.watched.values[index].stopping = false
            state.watched.values[index].won = [:]
            state.watched.values[index].pending = watched.pending.filter { !$0.value.claiming || $0.value.deadLettering }.mapValues { entry in
                var entry = entry
                entry.rankedWait = nil  // its caller is answered below (its waiter is among the label's claims)
                return entry
            }
            boundTracking(&state, adding: Self.payloadBytes(of: state.watched.values[index]))
            return (watched, waiters)
        }
        watched?.continuation?.finish()
        for waiter in waiters { waiter.resume(with: .failure(HandoffError.notSubscribed(label))) }
        return watched.map(Self.unsettled(of:)) ?? Unsettled()
    }

    /// Stops watching `label` once the verdicts of this participant's claims for it have arrived (at most
    /// `timeout`); returns the handoffs it won and did not hand out, and the claims still without a verdict.
    ///
    /// Call it from a task that is not cancelled: it waits for the broker.
    func stopWatching(_ label: HandoffLabel, settlingWithin timeout: Duration) async -> Unsettled {
        state.withLock { state in state.modifyWatched(label.topicLevel) { $0.stopping = true } }
        abortRankedWaits(of: [label.topicLevel]) { HandoffError.notSubscribed($0) }
        await awaitVerdicts(of: [label.topicLevel], timeout: timeout)
        return stopWatching(label)
    }

    private static func unsettled(of watched: Watched) -> Unsettled {
        Unsettled(won: Array(watched.won.values), unknown: watched.pending.values.filter { $0.claiming && !$0.deadLettering })
    }

    /// Waits, at most `timeout`, until no merge claim of this participant for the labels `levels` (every watched
    /// label when `nil`) waits for its verdict. One ordering marker usually does it: the broker orders the marker
    /// after every claim sent before it (A3), so once the marker is back, so are those claims, and their rounds'
    /// verdicts (each at or before this participant's own claim) have been routed.
    private func awaitVerdicts(of levels: Set<String>?, timeout: Duration) async {
        let deadline = ContinuousClock.now + timeout
        while hasClaimsInFlight(levels) {
            let remaining = ContinuousClock.now.duration(to: deadline)
            guard remaining > .zero, !Task.isCancelled else { return }
            do {
                try await sync(timeout: remaining)
            } catch {
                // Not connected (the marker could not go out): try again shortly, until the deadline.
                if case HandoffError.shutdown = error { return }
                try? await Task.sleep(for: min(.milliseconds(50), remaining))
            }
        }
    }

    private func hasClaimsInFlight(_ levels: Set<String>?) -> Bool {
        state.withLock { state in
            state.watched.contains { level, watched in
                (levels?.contains(level) ?? true) && watched.pending.values.contains { $0.claiming && !$0.deadLettering }
            }
        }
    }

    /// Publishes a handoff this participant won, and will not merge, again as it was received: retained, a new
    /// round, waiting for any participant (docs/PROTOCOL.md §5, "Stopping"). Its verdict is forgotten here first,
    /// so that this participant, if it still watches the label, takes the new round for a waiting handoff and
    /// not for one it merged before.
    func returnHandoff(label: HandoffLabel, id: String, payload: Data, timeout: Duration) async throws {
        state.withLock { state in
            state.modifyWatched(label.topicLevel) { watched in
                watched.verdicts[id] = nil
                watched.won[id] = nil
            }
        }
        let properties = MQTTPublishProperties(messageExpiryInterval: options.handoffExpiry, contentType: Self.contentType)
        let (client, topic, arbiter, prefix) = (self.client, roundTopic(label, id), key(isArbitrated: id) ? options.arbiter : nil, topics.prefix)
        try await withDeadline(timeout, operation: "return handoff '\(label)'/\(id)") {
            try await arbiter?.store(prefix: prefix, label: label, id: id, payload: payload)
            try await client.publish(topic, payload: payload, qos: .atLeastOnce, retain: true, properties: properties)
        }
    }

    func pending(_ label: HandoffLabel) throws -> [HandoffEnvelope] {
        let entries = try state.withLock { state in
            guard let watched = state.watched[label.topicLevel], watched.isWatched else { throw HandoffError.notSubscribed(label) }
            return Array(watched.won.values) + watched.pending.values.filter { !$0.claiming && $0.rankedWait == nil }
        }
        return entries.map(\.envelope).sorted { ($0.createdAt, $0.id.rawValue) < ($1.createdAt, $1.id.rawValue) }
    }

    func rawPayload(of envelope: HandoffEnvelope) -> Data {
        let stored = state.withLock { state -> Data? in
            guard let watched = state.watched[envelope.label.topicLevel] else { return nil }
            let key = self.key(of: envelope)
            return (watched.pending[key] ?? watched.won[key])?.payload
        }
        return stored ?? envelope.encoded()
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
            guard let label = state.withLock({ Self.tracked(&$0, level: labelLevel) }) else { return }
            if message.payload.isEmpty {
                routeClaim(label: label, id: String(id), topic: message.topic, properties: message.properties)
            } else {
                routeHandoff(label: label, id: String(id), payload: message.payload, properties: message.properties, retained: message.retain)
            }
        } else if let (labelLevel, instance) = topics.parseCheckpoint(message.topic) {
            guard let label = state.withLock({ Self.tracked(&$0, level: labelLevel) }) else { return }
            routeCheckpoint(label: label, instance: String(instance), message: message)
        } else if let instance = topics.parseInstance(message.topic) {
            routeStatus(instance: String(instance), payload: message.payload)
        }
    }

    func routeHandoff(label: HandoffLabel, id: String, payload: Data, properties: MQTTPublishProperties, retained: Bool) {
        let envelope: HandoffEnvelope
        do {
            envelope = try HandoffEnvelope.read(payload, topicLabel: label, topicID: id, keys: options.keys, maximumSize: options.maximumPayloadSize)
        } catch {
            reject(label: label, id: id, payload: payload, reason: error.reason, detail: error.detail, roundOpen: isRoundOpen(label, id))
            return
        }
        let restoredBy = properties.userProperty(HandoffProperty.restoreBy)
        enum Outcome { case ignore, offer(AsyncStream<HandoffNotice>.Continuation?, supersedes: (key: String, mac: String?)?), resurrected(mac: String?) }
        let outcome = state.withLock { state -> Outcome in
            let outcome = state.modifyWatched(label.topicLevel) { watched -> Outcome in
                if restoredBy != nil, Self.restoresOpenRound(&watched, id, payload: payload) { return .ignore }
                let mergedHereBefore = watched.verdicts[id]?.merged(by: origin.instance) ?? false
                // A handoff on this topic opens a new round: earlier claims no longer count.
                watched.verdicts[id] = nil
                let mine = envelope.origin.instance == origin.instance
                watched.openRounds[id] = Round(payload: mine ? nil : payload, mac: envelope.signatureMAC)
                // Merged here before (a resurrection after a broker crash, or a stale restore), or this participant's
                // own restore of a round that was decided meanwhile (docs/PROTOCOL.md §10.6). Only a live one: a retained
                // copy of its own restore, delivered after a resubscription, may be the only copy of a waiting handoff.
                if mergedHereBefore || (restoredBy == origin.instance && !retained) { return .resurrected(mac: envelope.signatureMAC) }
                guard !mine else { return .ignore }
                watched.handedOffBy.insert(envelope.origin.instance)
                // The same handoff again (re-sent retained copy after a resubscription): keep its claim state.
                var entry = Entry(key: id, envelope: envelope, payload: payload)
                entry.wasRetained = retained
                if restoredBy != nil { entry.claimableAt = .now + Self.restoreGrace }
                watched.replacePending(id, with: entry)
                // It replaces its origin's checkpoint of the label: a released one waiting here is cleared, never merged
                // (a held one is when it is released, docs/PROTOCOL.md §9.6).
                let checkpoint = "@" + envelope.origin.instance
                guard let released = watched.pending[checkpoint], !released.claiming else {
                    return .offer(watched.continuation, supersedes: nil)
                }
                watched.pending[checkpoint] = nil
                return .offer(watched.continuation, supersedes: (checkpoint, released.envelope.signatureMAC))
            } ?? .ignore
            if case .offer(nil, _) = outcome { boundTracking(&state, adding: payload.count) }
            return outcome
        }
        switch outcome {
        case .ignore: break
        case .offer(let notices, let supersedes):
            notices?.yield(.available(label))
            if let supersedes { clearResurrected(label: label, id: supersedes.key, mac: supersedes.mac, why: Self.replacedByHandoff) }
        case .resurrected(let mac): clearResurrected(label: label, id: id, mac: mac)
        }
    }

    /// A handoff this participant already merged is waiting again: the broker lost the clear (it saves after
    /// acknowledging, so a crash in between brings the retained message back). Claim it at once as
    /// `already-merged`, a claim that nobody merges, so that it is not merged a second time.
    func clearResurrected(
        label: HandoffLabel, id: String, mac: String?, why: String = "Clearing a handoff that was merged here before and came back"
    ) {
        logger.info("\(why)", metadata: ["handoff.label": "\(label)", "handoff.id": "\(id)"])
        let (client, topic) = (self.client, roundTopic(label, id))
        let properties = claimProperties(topic: topic, purpose: "already-merged", roundMAC: mac)
        Task {
            try? await client.publish(topic, payload: Data(), qos: .atLeastOnce, retain: true, properties: properties)
        }
    }

    func routeClaim(label: HandoffLabel, id: String, topic: String, properties: MQTTPublishProperties) {
        guard let claimer = properties.userProperty(HandoffProperty.claimBy), !claimer.isEmpty else {
            // A clear without a claim (another tool, an operator, an attacker): not a claim. Whoever holds the handoff
            // can still claim it, and restores it for later subscribers (docs/PROTOCOL.md §10.6).
            restoreAfterClear(label: label, id: id, why: "a zero-length message without handoff-claim-by")
            return
        }
        let purpose = properties.userProperty(HandoffProperty.claimPurpose)
        if let keys = options.keys {
            let mac = state.withLock { $0.watched[label.topicLevel]?.openRounds[id]?.mac }
            let signature = properties.userProperty(HandoffProperty.claimSignature)
            guard keys.verifiesClaim(signature, topic: topic, claimBy: claimer, purpose: purpose, roundMAC: mac) else {
                // Not a claim either (docs/PROTOCOL.md §10.5): forged, or by a participant whose keys this one does not hold.
                restoreAfterClear(
                    label: label, id: id, why: signature == nil ? "an unsigned claim by \(claimer)" : "a claim by \(claimer) whose signature does not verify"
                )
                return
            }
        }
        let mine = claimer == origin.instance
        // Only `dead-letter` and `already-merged` claims are not merged: a claim without a purpose, with `merge` or
        // with a purpose this release does not know is a merge, so that its winner never drops the handoff.
        let merging = !Self.unmergedPurposes.contains(purpose ?? "merge")
        let verdict = Verdict(winner: claimer, merging: merging, alreadyMerged: purpose == "already-merged")
        let (waiter, notify) = state.withLock { state -> (ClaimWaiter?, AsyncStream<HandoffNotice>.Continuation?) in
            let verdict = state.modifyWatched(label.topicLevel) { watched -> (entry: Entry?, continuation: AsyncStream<HandoffNotice>.Continuation?)? in
                guard watched.openRounds.removeValue(forKey: id) != nil else { return nil }
                watched.record(verdict: verdict, for: id)
                let entry = watched.pending.removeValue(forKey: id)
                watched.held[id] = nil
                return (entry, watched.continuation)
            }
            guard let verdict = verdict ?? nil else { return (nil, nil) }
            let waiter = state.claims.removeValue(forKey: topic)
            if mine, merging, waiter == nil, let entry = verdict.entry {
                // Won, but whoever asked has given up: keep it for the next complete().
                state.modifyWatched(label.topicLevel) { $0.won[id] = entry }
                return (nil, verdict.continuation)
            }
            return (waiter, nil)
        }
        waiter?.resume(with: .success(mine && merging))
        notify?.yield(.available(label))
    }

    // MARK: - Claiming

    func claim(_ envelope: HandoffEnvelope, timeout: Duration) async throws -> Bool {
        let label = envelope.label
        let id = key(of: envelope)
        if let arbiter = options.arbiter, key(isArbitrated: id) { return try await claimThroughArbiter(envelope, arbiter) }
        let topic = roundTopic(label, id)
        // A round opened by a restore waits out its grace first (docs/PROTOCOL.md §10.6).
        if let claimableAt = state.withLock({ $0.watched[label.topicLevel]?.pending[id]?.claimableAt }), claimableAt > .now {
            try await Task.sleep(until: claimableAt)
        }
        // Ranked claims (docs/PROTOCOL.md §5): below the first rank, the claim waits its turn before it is published.
        let rankedDelay = rankedDelay(for: envelope, timeout: timeout)
        enum Start { case decided(Bool), claim(UInt64, mac: String?) }
        let start = try state.withLock { state -> Start in
            guard !state.shutDown, !state.stopping else { throw HandoffError.shutdown }
            let token = state.nextToken
            let start = state.modifyWatched(label.topicLevel) { watched -> Start? in
                guard watched.isWatched, !watched.stopping else { return nil }
                if watched.won.removeValue(forKey: id) != nil { return .decided(true) }
                if let won = watched.decided(id, by: origin.instance) { return .decided(won) }
                // Not waiting (never seen, or claimed by this process already): nothing to win.
                guard let entry = watched.pending[id], !entry.claiming, entry.rankedWait == nil else { return .decided(false) }
                if rankedDelay > .zero {
                    watched.pending[id]?.rankedWait = token
                } else {
                    watched.pending[id]?.claiming = true
                }
                return .claim(token, mac: watched.openRounds[id]?.mac ?? entry.envelope.signatureMAC)
            }
            guard let start = start ?? nil else { throw HandoffError.notSubscribed(label) }
            if case .claim = start { state.nextToken += 1 }
            return start
        }
        guard case .claim(let token, let mac) = start else {
            if case .decided(let won) = start { return won }
            return false
        }
        let properties = claimProperties(topic: topic, purpose: "merge", roundMAC: mac)
        claimWillRegister.withLock { $0 }?(topic)
        do {
            // The caller's task waits for the verdict itself (no task in between: the verdict resumes it directly);
            // the time limit is kept by the shared TimeoutClock.
            return try await withTaskCancellationHandler {
                try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Bool, any Error>) in
                    let timer = TimeoutClock.shared.schedule(after: timeout) { [self] in
                        // Like a cancellation, a timeout leaves the handoff marked as claimed: the verdict decides.
                        failClaim(topic: topic, token: token, error: HandoffError.timeout(operation: "claim", after: timeout))
                    }
                    enum Registration { case shutDown, cancelled, decided(Bool), waiting }
                    let cancelled = Task.isCancelled
                    var superseded: ClaimWaiter?
                    let registration = state.withLock { state -> Registration in
                        guard !state.shutDown else { return .shutDown }
                        if cancelled {
                            // Nothing was published: the handoff is still this participant's to claim later.
                            state.modifyWatched(label.topicLevel) { watched in
                                watched.pending[id]?.claiming = false
                                if watched.pending[id]?.rankedWait == token { watched.pending[id]?.rankedWait = nil }
                            }
                            return .cancelled
                        }
                        // Another participant's claim may have arrived since this claim was decided on: its
                        // verdict is final, and no later message would resume a waiter registered now.
                        if let won = state.modifyWatched(label.topicLevel, { $0.decided(id, by: origin.instance) }) ?? nil {
                            return .decided(won)
                        }
                        let waiter = ClaimWaiter(token: token, continuation: continuation, timer: timer, level: label.topicLevel, key: id)
                        superseded = state.claims.updateValue(waiter, forKey: topic)
                        return .waiting
                    }
                    // (Only one claim of a topic is in flight at a time; should another one have been, it is answered.)
                    superseded?.resume(with: .failure(HandoffError.claimOutcomeUnknown(
                        label: label, id: envelope.id, detail: "a newer claim of the same topic took its place")))
                    switch registration {
                    case .shutDown:
                        timer.cancel()
                        return continuation.resume(throwing: HandoffError.shutdown)
                    case .cancelled:
                        timer.cancel()
                        return continuation.resume(throwing: CancellationError())
                    case .decided(let won):
                        timer.cancel()
                        return continuation.resume(returning: won)
                    case .waiting: break
                    }
                    if rankedDelay > .zero {
                        // Published when its turn comes, unless the verdict (or a cancellation, a stop) answers it first.
                        _ = TimeoutClock.shared.schedule(after: rankedDelay) { [self] in
                            publishRankedClaim(topic: topic, token: token, label: label, id: id, properties: properties)
                        }
                        return
                    }
                    // The clear is published after the waiter is registered: the verdict cannot be missed.
                    // Nobody waits for its PUBACK: only a failure matters.
                    client.publish(topic, payload: Data(), qos: .atLeastOnce, retain: true, properties: properties) { [self] result in
                        guard case .failure(let error) = result else { return }
                        // The clear did not go out: the handoff is still waiting and may be claimed again.
                        failClaim(topic: topic, token: token, error: error, label: label, id: id)
                    }
                }
            } onCancel: {
                self.failClaim(topic: topic, token: token, error: CancellationError())
            }
        } catch HandoffError.timeout {
            // The verdict may still come: if this participant wins, the handoff is offered again by pending().
            throw HandoffError.claimOutcomeUnknown(
                label: label, id: envelope.id,
                detail: "no verdict within \(timeout); if this participant wins, the next complete() returns it"
            )
        } catch let error as MQTTError {
            throw HandoffError.transportUnavailable("Could not claim handoff '\(label)'/\(id): \(error)")
        }
    }

    /// Gives up waiting for the verdict of the claim `token` (the verdict is still recorded when it comes). A ranked
    /// claim still waiting for its turn is not published at all.
    func failClaim(topic: String, token: UInt64, error: any Error, label: HandoffLabel? = nil, id: String = "") {
        let waiter = state.withLock { state -> ClaimWaiter? in
            guard let waiter = state.claims[topic], waiter.token == token else { return nil }
            if let label { state.watched[label.topicLevel]?.pending[id]?.claiming = false }
            state.modifyWatched(waiter.level) { watched in
                if watched.pending[waiter.key]?.rankedWait == token { watched.pending[waiter.key]?.rankedWait = nil }
            }
            return state.claims.removeValue(forKey: topic)
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
        label: HandoffLabel, id: String, payload: Data, reason: HandoffRejection.Reason, detail: String, claim: Bool = true, timeout: Duration
    ) async throws {
        let deadProperties = MQTTPublishProperties(userProperties: [
            MQTTUserProperty(HandoffProperty.deadReason, reason.rawValue),
            MQTTUserProperty(HandoffProperty.deadDetail, HandoffRejection.truncatedDetail(detail)),
            MQTTUserProperty(HandoffProperty.deadBy, origin.instance),
            MQTTUserProperty(HandoffProperty.deadAt, RFC3339.format(Date())),
            MQTTUserProperty(HandoffProperty.deadTopic, roundTopic(label, id)),
        ])
        let roundMAC = state.withLock { state in
            state.watched[label.topicLevel].flatMap { $0.openRounds[id]?.mac ?? $0.pending[id]?.envelope.signatureMAC }
        }
        let claimProperties = claimProperties(topic: roundTopic(label, id), purpose: "dead-letter", roundMAC: roundMAC)
        // With an arbiter, the store lets go of it too (a claimer that takes it anyway merges it: the dead letter is then a
        // redundant copy, as with a lost dead-letter claim).
        if claim, let arbiter = options.arbiter, key(isArbitrated: id) {
            try? await arbiter.remove(prefix: topics.prefix, label: label, id: id)
        }
        // While it is being dead-lettered, it is not offered again.
        if claim {
            state.withLock { state in
                state.modifyWatched(label.topicLevel) { watched in
                    watched.pending[id]?.claiming = true
                    watched.pending[id]?.deadLettering = true
                }
            }
        }
        let (client, deadTopic, roundTopic) = (self.client, topics.deadLetter(label, id: Self.topicLevel(ofKey: id)), roundTopic(label, id))
        do {
            try await withDeadline(timeout, operation: "dead-letter '\(label)'/\(id)") {
                try await client.publish(deadTopic, payload: payload, qos: .atLeastOnce, retain: true, properties: deadProperties)
                // Only once the dead letter is stored is the handoff taken out of the waiting ones.
                guard claim else { return }
                try await client.publish(roundTopic, payload: Data(), qos: .atLeastOnce, retain: true, properties: claimProperties)
            }
        } catch {
            guard claim else { throw error }
            state.withLock { state in
                state.modifyWatched(label.topicLevel) { watched in
                    watched.pending[id]?.claiming = false
                    watched.pending[id]?.deadLettering = false
                }
            }
            throw error
        }
        logger.debug(
            "Handoff moved to dead letters",
            metadata: ["handoff.label": "\(label)", "handoff.id": "\(id)", "handoff.reason": "\(reason.rawValue)", "handoff.detail": "\(detail)"]
        )
    }

    /// Whether a readable handoff of topic `id` is waiting without a verdict, as this participant saw it.
    func isRoundOpen(_ label: HandoffLabel, _ id: String) -> Bool {
        state.withLock { $0.watched[label.topicLevel]?.openRounds[id] != nil }
    }

    /// A message on a handoff topic that is not a readable envelope: dead-letter it (or, for a newer
    /// format this release cannot read, leave it for a participant that can), and report it. On the topic of an
    /// open round it neither opens nor decides a round: it is dead-lettered without a claim, so that the waiting
    /// handoff stays claimable by those who saw it.
    func reject(label: HandoffLabel, id: String, payload: Data, reason: HandoffRejection.Reason, detail: String, roundOpen: Bool) {
        // It replaced the retained copy of a waiting handoff: put that back (docs/PROTOCOL.md §10.6).
        if roundOpen { restoreAfterClear(label: label, id: id, why: "an unreadable payload (\(reason.rawValue)) in its place") }
        guard reason != .unsupportedFormat, reason != .unknownKey else {
            logger.warning(
                reason == .unknownKey ? "Left a handoff signed or encrypted with an unknown key in place" : "Left a handoff of an unknown format in place",
                metadata: ["handoff.label": "\(label)", "handoff.id": "\(id)", "handoff.detail": "\(detail)"]
            )
            notify(label, .rejected(HandoffRejection(label: label, id: id, reason: reason, detail: detail, disposition: .leftInPlace)))
            return
        }
        Task {
            var disposition = HandoffRejection.Disposition.deadLettered
            do {
                try await deadLetter(label: label, id: id, payload: payload, reason: reason, detail: detail, claim: !roundOpen, timeout: .seconds(10))
                logger.warning(
                    "A message on a handoff topic is not a readable handoff; moved it to the dead letters",
                    metadata: ["handoff.label": "\(label)", "handoff.id": "\(id)", "handoff.reason": "\(reason.rawValue)", "handoff.detail": "\(detail)"]
                )
            } catch {
                disposition = .leftInPlace
                logger.warning("Could not dead-letter a rejected handoff; left it in place", metadata: ["handoff.label": "\(label)", "handoff.id": "\(id)", "handoff.error": "\(error)"])
            }
            notify(label, .rejected(HandoffRejection(label: label, id: id, reason: reason, detail: detail, disposition: disposition)))
        }
    }

    private func notify(_ label: HandoffLabel, _ notice: HandoffNotice) {
        state.withLock { $0.watched[label.topicLevel]?.continuation }??.yield(notice)
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

    /// Returns once every message the broker queued for this participant before now has been routed.
    ///
    /// Callers that arrive while a marker is in flight share the next marker, published as soon as that one
    /// is back (or after 50 ms): a marker published after a caller arrived answers it just as well, and
    /// watching 10,000 labels at once then sends a few markers instead of 10,000.
    func sync(timeout: Duration) async throws {
        try await withDeadline(timeout, operation: "sync with the broker") { [self] in
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                enum Action { case shutDown, publish(String), armFlush, wait }
                let action = state.withLock { state -> Action in
                    guard !state.shutDown else { return .shutDown }
                    guard state.syncInFlight != nil else {
                        let nonce = Self.nextNonce(&state)
                        state.syncInFlight = nonce
                        state.syncs[nonce] = [continuation]
                        return .publish(nonce)
                    }
                    state.syncQueued.append(continuation)
                    return state.syncQueued.count == 1 ? .armFlush : .wait
                }
                switch action {
                case .shutDown: continuation.resume(throwing: HandoffError.shutdown)
                case .publish(let nonce): publishMarker(nonce)
                case .armFlush:
                    // Progress even if the marker in flight is slow or lost.
                    _ = TimeoutClock.shared.schedule(after: .milliseconds(50)) { [self] in flushQueuedSyncs() }
                case .wait: break
                }
            }
        }
    }

    /// Unique among this participant's markers (its sync topic is its own); no UUID: on Linux each one opens
    /// /dev/urandom.
    private static func nextNonce(_ state: inout State) -> String {
        defer { state.nextToken += 1 }
        return "sync-\(state.nextToken)"
    }

    private func publishMarker(_ nonce: String) {
        client.publish(syncTopic, payload: Data(nonce.utf8), qos: .atLeastOnce) { [self] result in
            guard case .failure(let error) = result else { return }
            markerDone(nonce, .failure(error))
        }
    }

    /// A marker came back (or could not be sent): answer its callers, and send the next one for the queued.
    private func markerDone(_ nonce: String, _ result: Result<Void, any Error>) {
        let (waiters, next) = state.withLock { state -> ([CheckedContinuation<Void, any Error>], String?) in
            let waiters = state.syncs.removeValue(forKey: nonce) ?? []
            guard state.syncInFlight == nonce else { return (waiters, nil) }
            state.syncInFlight = nil
            return (waiters, Self.takeQueuedSyncs(&state))
        }
        for waiter in waiters { waiter.resume(with: result) }
        if let next { publishMarker(next) }
    }

    private func flushQueuedSyncs() {
        if let next = state.withLock({ Self.takeQueuedSyncs(&$0) }) { publishMarker(next) }
    }

    /// Moves the queued callers to a new marker in flight; returns its nonce (nil: nobody queued).
    private static func takeQueuedSyncs(_ state: inout State) -> String? {
        guard !state.syncQueued.isEmpty, !state.shutDown else { return nil }
        let nonce = nextNonce(&state)
        state.syncs[nonce] = state.syncQueued
        state.syncQueued = []
        state.syncInFlight = nonce
        return nonce
    }

    // MARK: - Connection changes

    func connectionChanged(_ event: MQTTConnectionEvent) {
        guard case .connected(let sessionPresent, reconnect: true) = event else { return }
        // The statuses are read again after every connect: a status removed meanwhile must not stay a claim candidate.
        candidates.reset()
        // Nothing could be heard while disconnected: the liveness lease of every instance starts again.
        state.withLock { state in
            let now = ContinuousClock.now
            for instance in state.lastHeard.keys { state.lastHeard[instance] = now }
        }
        guard !sessionPresent else {
            // The broker kept the session, but if it restarted from its store, a handoff cleared after its
            // last save is back as a retained message that a kept subscription does not deliver again.
            // Subscribing again asks for the retained messages: what is really waiting is seen again.
            subscribeAgain()
            return
        }
        // The broker kept no session: what was published while we were away is lost to us, and the
        // verdicts of claims in flight may be among it. Waiting handoffs come back as retained messages
        // with the resubscription; claims in flight have an unknown outcome: their handoffs are
        // dead-lettered (nothing is lost; a duplicate is possible and flagged by the reason).
        let (uncertain, waiters, unpublished) = state.withLock { state in
            var uncertain: [Entry] = []
            var unpublished: Set<UInt64> = []
            for (level, var watched) in state.watched {
                uncertain += watched.pending.values.filter { $0.claiming && !$0.deadLettering }
                unpublished.formUnion(watched.pending.values.compactMap(\.rankedWait))
                watched.pending = [:]
                watched.held = [:]
                watched.openRounds = [:]
                watched.verdicts = [:]
                watched.verdictOrder = []
                state.watched[level] = watched
            }
            let waiters = Array(state.claims.values)
            state.claims = [:]
            return (uncertain, waiters, unpublished)
        }
        // The client restored the subscriptions before this ran, so their retained messages may have been routed
        // and just forgotten: subscribing again sends them again, now that nothing is left to forget.
        subscribeAgain()
        logger.warning("Broker session lost; waiting handoffs are read again", metadata: ["handoff.claims_in_flight": "\(uncertain.count)"])
        for waiter in waiters {
            let detail = unpublished.contains(waiter.token)
                ? "the broker session was lost before this participant's ranked claim was published; the waiting handoffs are read again"
                : "the broker session was lost during the claim; the handoff was dead-lettered"
            waiter.resume(with: .failure(HandoffError.transportUnavailable(detail)))
        }
        for entry in uncertain {
            Task {
                try? await deadLetter(
                    label: entry.envelope.label, id: entry.key, payload: entry.payload, reason: .claimOutcomeUnknown,
                    detail: "the broker session was lost while this participant's claim was in flight; another participant may also have merged it",
                    timeout: .seconds(10)
                )
            }
        }
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
        state.withLock { $0.stopping = true }
        abortRankedWaits(of: nil) { _ in HandoffError.shutdown }
        await awaitVerdicts(of: nil, timeout: timeout)
        let (watched, claims, syncs) = state.withLock { state in
            state.shutDown = true
            defer {
                state.watched = [:]
                state.claims = [:]
                state.syncs = [:]
                state.syncQueued = []
                state.syncInFlight = nil
            }
            return (Array(state.watched.values), Array(state.claims.values), state.syncs.values.flatMap { $0 } + state.syncQueued)
        }
        for entry in watched { entry.continuation?.finish() }
        for waiter in claims { waiter.resume(with: .failure(HandoffError.shutdown)) }
        for continuation in syncs { continuation.resume(throwing: HandoffError.shutdown) }
        return watched.reduce(into: Unsettled()) { unsettled, watched in
            let more = Self.unsettled(of: watched)
            unsettled.won += more.won
            unsettled.unknown += more.unknown
        }
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

extension HandoffRouter {
    /// The winner of the latest round of handoff `id` of a watched label, if this participant saw it.
    func verdict(label: HandoffLabel, id: String) -> String? {
        state.withLock { $0.watched[label.topicLevel]?.verdicts[id]?.winner }
    }
}

extension MQTTHandoffTransport {
    /// The instance that won handoff `id` as this participant saw it (for tests and diagnostics).
    func verdict(label: HandoffLabel, id: String) -> String? {
        router.verdict(label: label, id: id)
    }
}
