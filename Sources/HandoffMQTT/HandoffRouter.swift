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
final class HandoffRouter: Sendable {
    /// The MQTT 5 content type of handoff messages.
    static let contentType = "application/vnd.swift-handoff"

    struct Entry: Sendable {
        var envelope: HandoffEnvelope
        /// The payload exactly as received (what a dead letter stores).
        var payload: Data
        /// A claim of ours is in flight for it.
        var claiming = false
    }

    struct Watched {
        let label: HandoffLabel
        var continuation: AsyncStream<HandoffNotice>.Continuation
        /// Handoffs waiting, by id: seen, not yet claimed by anyone.
        var pending: [String: Entry] = [:]
        /// Handoffs this participant won whose claim() caller had given up (timeout, reconnect): handed out next time.
        var won: [String: Entry] = [:]
        /// Topics (by id) whose round is open: the handoff was seen, no claim yet. Claims on a topic whose
        /// round this participant did not see open (it subscribed after the first claim) are not verdicts.
        var openRounds: Set<String> = []
        /// Winners of recent rounds, by id, to answer late claim() calls.
        var verdicts: [String: Verdict] = [:]
        var verdictOrder: [String] = []

        mutating func record(verdict: Verdict, for id: String) {
            verdicts[id] = verdict
            verdictOrder.append(id)
            if verdictOrder.count > 20_000 {
                for old in verdictOrder.prefix(10_000) { verdicts[old] = nil }
                verdictOrder.removeFirst(10_000)
            }
        }
    }

    /// The first claim of a round: who won, and whether to merge it or to dead-letter it.
    struct Verdict: Sendable, Hashable {
        var winner: String
        var merging: Bool
    }

    struct ClaimWaiter {
        var token: UInt64
        var continuation: CheckedContinuation<Bool, any Error>
    }

    struct State {
        var watched: [String: Watched] = [:]
        var claims: [String: ClaimWaiter] = [:]
        var syncs: [String: CheckedContinuation<Void, any Error>] = [:]
        var nextToken: UInt64 = 1
        var shutDown = false
    }

    let client: MQTTClient
    let topics: HandoffTopics
    let options: MQTTHandoffTransport.Options
    let origin: HandoffOrigin
    let logger: Logger
    let syncTopic: String
    private let state = Mutex(State())

    init(client: MQTTClient, topics: HandoffTopics, options: MQTTHandoffTransport.Options, origin: HandoffOrigin, logger: Logger) {
        self.client = client
        self.topics = topics
        self.options = options
        self.origin = origin
        self.logger = logger
        self.syncTopic = topics.sync(instance: origin.instance)
    }

    // MARK: - Watching

    func startWatching(_ label: HandoffLabel) -> AsyncStream<HandoffNotice> {
        let (stream, continuation) = AsyncStream.makeStream(of: HandoffNotice.self)
        let previous = state.withLock { state -> AsyncStream<HandoffNotice>.Continuation? in
            if state.shutDown {
                continuation.finish()
                return nil
            }
            let previous = state.watched[label.topicLevel]?.continuation
            state.watched[label.topicLevel] = Watched(label: label, continuation: continuation)
            return previous
        }
        previous?.finish()
        return stream
    }

    func stopWatching(_ label: HandoffLabel) {
        let prefix = topics.handoffFilter(label).dropLast()
        let (watched, waiters) = state.withLock { state in
            let watched = state.watched.removeValue(forKey: label.topicLevel)
            let topics = state.claims.keys.filter { $0.hasPrefix(prefix) }
            return (watched, topics.compactMap { state.claims.removeValue(forKey: $0) })
        }
        watched?.continuation.finish()
        for waiter in waiters { waiter.continuation.resume(throwing: HandoffError.notSubscribed(label)) }
    }

    func pending(_ label: HandoffLabel) throws -> [HandoffEnvelope] {
        let entries = try state.withLock { state in
            guard let watched = state.watched[label.topicLevel] else { throw HandoffError.notSubscribed(label) }
            return Array(watched.won.values) + watched.pending.values.filter { !$0.claiming }
        }
        return entries.map(\.envelope).sorted { ($0.createdAt, $0.id.rawValue) < ($1.createdAt, $1.id.rawValue) }
    }

    func rawPayload(of envelope: HandoffEnvelope) -> Data {
        let stored = state.withLock { state in
            let watched = state.watched[envelope.label.topicLevel]
            return (watched?.pending[envelope.id.rawValue] ?? watched?.won[envelope.id.rawValue])?.payload
        }
        return stored ?? envelope.encoded()
    }

    // MARK: - Routing (one task, in the broker's order)

    func route(_ message: MQTTMessage) {
        if message.topic == syncTopic {
            let nonce = String(decoding: message.payload, as: UTF8.self)
            state.withLock { $0.syncs.removeValue(forKey: nonce) }?.resume()
            return
        }
        guard let (labelLevel, id) = topics.parseHandoff(message.topic) else { return }
        guard let label = state.withLock({ $0.watched[String(labelLevel)]?.label }) else { return }
        if message.payload.isEmpty {
            routeClaim(label: label, id: String(id), topic: message.topic, properties: message.properties)
        } else {
            routeHandoff(label: label, id: String(id), payload: message.payload)
        }
    }

    private func routeHandoff(label: HandoffLabel, id: String, payload: Data) {
        let envelope: HandoffEnvelope
        do {
            envelope = try HandoffEnvelope.decode(payload, maximumSize: options.maximumPayloadSize)
        } catch {
            reject(label: label, id: id, payload: payload, reason: error.reason, detail: error.detail)
            return
        }
        guard envelope.id.rawValue == id, envelope.label == label else {
            reject(
                label: label, id: id, payload: payload, reason: .labelMismatch,
                detail: "the envelope names '\(envelope.label)'/\(envelope.id) but was published on the topic of '\(label)'/\(id)"
            )
            return
        }
        let notify = state.withLock { state -> AsyncStream<HandoffNotice>.Continuation? in
            guard var watched = state.watched[label.topicLevel] else { return nil }
            defer { state.watched[label.topicLevel] = watched }
            // A handoff on this topic opens a new round: earlier claims no longer count.
            watched.verdicts[id] = nil
            watched.openRounds.insert(id)
            guard envelope.origin.instance != origin.instance else { return nil }
            watched.pending[id] = Entry(envelope: envelope, payload: payload)
            return watched.continuation
        }
        notify?.yield(.available(label))
    }

    private func routeClaim(label: HandoffLabel, id: String, topic: String, properties: MQTTPublishProperties) {
        guard let claimer = properties.userProperty(HandoffProperty.claimBy), !claimer.isEmpty else {
            // A clear without a claim (another tool, an operator): not a claim. Whoever holds the handoff
            // can still claim it; see docs/PROTOCOL.md.
            logger.debug("Ignored a clear without a claim", metadata: ["handoff.label": "\(label)", "handoff.id": "\(id)"])
            return
        }
        let mine = claimer == origin.instance
        let merging = properties.userProperty(HandoffProperty.claimPurpose) != "dead-letter"
        let (waiter, notify) = state.withLock { state -> (ClaimWaiter?, AsyncStream<HandoffNotice>.Continuation?) in
            guard var watched = state.watched[label.topicLevel], watched.openRounds.contains(id) else { return (nil, nil) }
            defer { state.watched[label.topicLevel] = watched }
            watched.openRounds.remove(id)
            watched.record(verdict: Verdict(winner: claimer, merging: merging), for: id)
            let entry = watched.pending.removeValue(forKey: id)
            let waiter = state.claims.removeValue(forKey: topic)
            if mine, merging, waiter == nil, let entry {
                // Won, but whoever asked has given up: keep it for the next complete().
                watched.won[id] = entry
                return (nil, watched.continuation)
            }
            return (waiter, nil)
        }
        waiter?.continuation.resume(returning: mine && merging)
        notify?.yield(.available(label))
    }

    // MARK: - Claiming

    func claim(_ envelope: HandoffEnvelope, timeout: Duration) async throws -> Bool {
        let label = envelope.label
        let id = envelope.id.rawValue
        let topic = topics.handoff(label, id: id)
        enum Start { case decided(Bool), claim(UInt64) }
        let start = try state.withLock { state -> Start in
            guard !state.shutDown else { throw HandoffError.shutdown }
            guard var watched = state.watched[label.topicLevel] else { throw HandoffError.notSubscribed(label) }
            defer { state.watched[label.topicLevel] = watched }
            if watched.won.removeValue(forKey: id) != nil { return .decided(true) }
            if let verdict = watched.verdicts[id] { return .decided(verdict.merging && verdict.winner == origin.instance) }
            // Not waiting (never seen, or claimed by this process already): nothing to win.
            guard var entry = watched.pending[id], !entry.claiming else { return .decided(false) }
            entry.claiming = true
            watched.pending[id] = entry
            defer { state.nextToken += 1 }
            return .claim(state.nextToken)
        }
        guard case .claim(let token) = start else {
            if case .decided(let won) = start { return won }
            return false
        }
        let properties = MQTTPublishProperties(userProperties: [
            MQTTUserProperty(HandoffProperty.claimBy, origin.instance),
            MQTTUserProperty(HandoffProperty.claimPurpose, "merge"),
        ])
        do {
            return try await withDeadline(timeout, operation: "claim") { [self] in
                try await withTaskCancellationHandler {
                    try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Bool, any Error>) in
                        enum Registration { case registered, shutDown, decided(Bool) }
                        let registration = state.withLock { state -> Registration in
                            guard !state.shutDown else { return .shutDown }
                            // Another participant's claim may have been routed since the check above: then the
                            // round is decided, and a claim published now would come too late to be a verdict.
                            if let verdict = state.watched[label.topicLevel]?.verdicts[id] {
                                return .decided(verdict.merging && verdict.winner == origin.instance)
                            }
                            state.claims[topic] = ClaimWaiter(token: token, continuation: continuation)
                            return .registered
                        }
                        switch registration {
                        case .registered: break
                        case .shutDown: return continuation.resume(throwing: HandoffError.shutdown)
                        case .decided(let won): return continuation.resume(returning: won)
                        }
                        // The clear is published after the waiter is registered: the verdict cannot be missed.
                        let client = self.client
                        Task {
                            do {
                                try await client.publish(topic, payload: Data(), qos: .atLeastOnce, retain: true, properties: properties)
                            } catch {
                                // The clear did not go out: the handoff is still waiting and may be claimed again.
                                self.failClaim(topic: topic, token: token, error: error, label: label, id: id)
                            }
                        }
                    }
                } onCancel: {
                    self.failClaim(topic: topic, token: token, error: CancellationError())
                }
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

    /// Gives up waiting for the verdict of the claim `token` (the verdict is still recorded when it comes).
    private func failClaim(topic: String, token: UInt64, error: any Error, label: HandoffLabel? = nil, id: String = "") {
        let waiter = state.withLock { state -> ClaimWaiter? in
            guard state.claims[topic]?.token == token else { return nil }
            if let label { state.watched[label.topicLevel]?.pending[id]?.claiming = false }
            return state.claims.removeValue(forKey: topic)
        }
        waiter?.continuation.resume(throwing: error)
    }

    // MARK: - Dead letters

    /// Moves a handoff to its dead-letter topic (retained, with the reason), then claims it so it stops waiting.
    func deadLetter(label: HandoffLabel, id: String, payload: Data, reason: HandoffRejection.Reason, detail: String, timeout: Duration) async throws {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        let deadProperties = MQTTPublishProperties(userProperties: [
            MQTTUserProperty(HandoffProperty.deadReason, reason.rawValue),
            MQTTUserProperty(HandoffProperty.deadDetail, String(detail.prefix(1024))),
            MQTTUserProperty(HandoffProperty.deadBy, origin.instance),
            MQTTUserProperty(HandoffProperty.deadAt, formatter.string(from: Date())),
            MQTTUserProperty(HandoffProperty.deadTopic, topics.handoff(label, id: id)),
        ])
        let claimProperties = MQTTPublishProperties(userProperties: [
            MQTTUserProperty(HandoffProperty.claimBy, origin.instance),
            MQTTUserProperty(HandoffProperty.claimPurpose, "dead-letter"),
        ])
        // While it is being dead-lettered, it is not offered again.
        state.withLock { $0.watched[label.topicLevel]?.pending[id]?.claiming = true }
        let (client, topics) = (self.client, self.topics)
        do {
            try await withDeadline(timeout, operation: "dead-letter '\(label)'/\(id)") {
                try await client.publish(topics.deadLetter(label, id: id), payload: payload, qos: .atLeastOnce, retain: true, properties: deadProperties)
                // Only once the dead letter is stored is the handoff taken out of the waiting ones.
                try await client.publish(topics.handoff(label, id: id), payload: Data(), qos: .atLeastOnce, retain: true, properties: claimProperties)
            }
        } catch {
            state.withLock { $0.watched[label.topicLevel]?.pending[id]?.claiming = false }
            throw error
        }
        logger.warning(
            "Handoff moved to dead letters",
            metadata: ["handoff.label": "\(label)", "handoff.id": "\(id)", "handoff.reason": "\(reason.rawValue)", "handoff.detail": "\(detail)"]
        )
    }

    /// A message on a handoff topic that is not a readable envelope: dead-letter it (or, for a newer
    /// format this release cannot read, leave it for a participant that can), and report it.
    private func reject(label: HandoffLabel, id: String, payload: Data, reason: HandoffRejection.Reason, detail: String) {
        guard reason != .unsupportedFormat else {
            logger.warning("Left a handoff of an unknown format in place", metadata: ["handoff.label": "\(label)", "handoff.id": "\(id)", "handoff.detail": "\(detail)"])
            notify(label, .rejected(HandoffRejection(label: label, id: id, reason: reason, detail: detail, disposition: .leftInPlace)))
            return
        }
        Task {
            var disposition = HandoffRejection.Disposition.deadLettered
            do {
                try await deadLetter(label: label, id: id, payload: payload, reason: reason, detail: detail, timeout: .seconds(10))
            } catch {
                disposition = .leftInPlace
                logger.warning("Could not dead-letter a rejected handoff; left it in place", metadata: ["handoff.label": "\(label)", "handoff.id": "\(id)", "handoff.error": "\(error)"])
            }
            notify(label, .rejected(HandoffRejection(label: label, id: id, reason: reason, detail: detail, disposition: disposition)))
        }
    }

    private func notify(_ label: HandoffLabel, _ notice: HandoffNotice) {
        state.withLock { $0.watched[label.topicLevel]?.continuation }?.yield(notice)
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
    func sync(timeout: Duration) async throws {
        let nonce = UUID().uuidString
        let (client, syncTopic) = (self.client, self.syncTopic)
        try await withDeadline(timeout, operation: "sync with the broker") { [self] in
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let registered = state.withLock { state in
                    guard !state.shutDown else { return false }
                    state.syncs[nonce] = continuation
                    return true
                }
                guard registered else { return continuation.resume(throwing: HandoffError.shutdown) }
                Task {
                    do {
                        try await client.publish(syncTopic, payload: Data(nonce.utf8), qos: .atLeastOnce)
                    } catch {
                        self.state.withLock { $0.syncs.removeValue(forKey: nonce) }?.resume(throwing: error)
                    }
                }
            }
        }
    }

    // MARK: - Connection changes

    func connectionChanged(_ event: MQTTConnectionEvent) {
        guard case .connected(sessionPresent: false, reconnect: true) = event else { return }
        // The broker kept no session: what was published while we were away is lost to us, and the
        // verdicts of claims in flight may be among it. Waiting handoffs come back as retained messages
        // with the resubscription; claims in flight have an unknown outcome: their handoffs are
        // dead-lettered (nothing is lost; a duplicate is possible and flagged by the reason).
        let (uncertain, waiters) = state.withLock { state in
            var uncertain: [Entry] = []
            for (level, var watched) in state.watched {
                uncertain += watched.pending.values.filter(\.claiming)
                watched.pending = [:]
                watched.openRounds = []
                watched.verdicts = [:]
                watched.verdictOrder = []
                state.watched[level] = watched
            }
            let waiters = Array(state.claims.values)
            state.claims = [:]
            return (uncertain, waiters)
        }
        logger.warning("Broker session lost; waiting handoffs are read again", metadata: ["handoff.claims_in_flight": "\(uncertain.count)"])
        for waiter in waiters {
            waiter.continuation.resume(throwing: HandoffError.transportUnavailable("the broker session was lost during the claim; the handoff was dead-lettered"))
        }
        for entry in uncertain {
            Task {
                try? await deadLetter(
                    label: entry.envelope.label, id: entry.envelope.id.rawValue, payload: entry.payload, reason: .claimOutcomeUnknown,
                    detail: "the broker session was lost while this participant's claim was in flight; another participant may also have merged it",
                    timeout: .seconds(10)
                )
            }
        }
    }

    func shutDown() {
        let (watched, claims, syncs) = state.withLock { state in
            state.shutDown = true
            defer {
                state.watched = [:]
                state.claims = [:]
                state.syncs = [:]
            }
            return (Array(state.watched.values), Array(state.claims.values), Array(state.syncs.values))
        }
        for entry in watched { entry.continuation.finish() }
        for waiter in claims { waiter.continuation.resume(throwing: HandoffError.shutdown) }
        for continuation in syncs { continuation.resume(throwing: HandoffError.shutdown) }
    }
}

extension DeadLetter {
    /// A dead letter read back from its retained message.
    init(label: HandoffLabel, topicID: String, message: MQTTMessage) {
        let properties = message.properties
        // RFC 3339 with or without a fraction: other implementations may write either (docs/PROTOCOL.md §7).
        let withFraction = ISO8601DateFormatter()
        withFraction.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        let withoutFraction = ISO8601DateFormatter()
        withoutFraction.formatOptions = [.withInternetDateTime]
        let rejectedAt = properties.userProperty(HandoffProperty.deadAt).flatMap {
            withFraction.date(from: $0) ?? withoutFraction.date(from: $0)
        }
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
