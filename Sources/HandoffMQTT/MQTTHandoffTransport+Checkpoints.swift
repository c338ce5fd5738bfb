import Foundation
import Handoff
import Logging
import MosquittoClient

/// Checkpoints over MQTT (docs/PROTOCOL.md §9): retained on `{prefix}/checkpoints/{label}/{instance}`, stamped with
/// the incarnation (connection number) they were written under, and released to successors by the instance's status
/// on `{prefix}/instances/{instance}`: the Will of a connection that died, or a birth repeating an earlier release.
extension MQTTHandoffTransport: HandoffCheckpointing {
    public func checkpoint(_ envelope: HandoffEnvelope, onlyIfChanged: Bool = true, timeout: Duration) async throws
        -> HandoffCheckpointOutcome
    {
        guard router.options.willDelay != nil else {
            throw HandoffError.transportUnavailable("Checkpoints need the Will that releases them: set Options.willDelay")
        }
        guard envelope.origin.instance == origin.instance else {
            throw HandoffError.encodingFailed(
                label: envelope.label, detail: "a checkpoint must come from this participant's instance \(origin.instance)")
        }
        let label = envelope.label
        let digest = envelope.sha256
        let fingerprint = "\(envelope.vsn) \(envelope.contentType) \(digest)"
        let incarnation: Int
        switch book.decide(label, fingerprint: fingerprint, onlyIfChanged: onlyIfChanged) {
        case .skip(let outcome): return outcome
        case .notWritable:
            throw HandoffError.transportUnavailable(
                "Not checkpointing '\(label)': not connected to the broker (or not yet announced after a reconnect)")
        case .write(let writable): incarnation = writable
        }
        var stamped = envelope
        stamped.incarnation = incarnation
        stamped.digest = digest  // hashed once: the header's sha256 is the fingerprint's
        if let keys = router.options.keys { stamped = try keys.seal(stamped) }
        let payload = stamped.encoded()
        let (client, topic) = (self.client, topics.checkpoint(label, instance: origin.instance))
        let properties = MQTTPublishProperties(contentType: HandoffRouter.contentType)
        do {
            try await withDeadline(timeout, operation: "checkpoint '\(label)'") {
                try await client.publish(topic, payload: payload, qos: .atLeastOnce, retain: true, properties: properties)
            }
        } catch let error as MQTTError {
            throw HandoffError.transportUnavailable("Could not store the checkpoint of '\(label)': \(error)", underlying: error)
        }
        router.wroteCheckpoint(label, mac: stamped.signatureMAC)
        let stored = CheckpointBook.Stored(label: label, fingerprint: fingerprint, incarnation: incarnation)
        return book.stored(label, stored) ? .written : .fenced
    }

    /// Does nothing when this participant never sent a checkpoint of `label`.
    public func removeCheckpoint(_ label: HandoffLabel, timeout: Duration) async throws {
        guard router.options.willDelay != nil, book.mayHaveCheckpoint(label) else { return }
        let (client, topic) = (self.client, topics.checkpoint(label, instance: origin.instance))
        let properties = router.claimProperties(
            topic: topic, purpose: "already-merged", roundMAC: router.ownCheckpointMACs.withLock { $0[label.topicLevel]?.last }
        )
        do {
            try await withDeadline(timeout, operation: "remove the checkpoint of '\(label)'") {
                try await client.publish(topic, payload: Data(), qos: .atLeastOnce, retain: true, properties: properties)
            }
        } catch let error as MQTTError {
            throw HandoffError.transportUnavailable("Could not remove the checkpoint of '\(label)': \(error)", underlying: error)
        }
        book.removed(label)
    }

    public func isFenced(_ label: HandoffLabel) -> Bool {
        book.fencing(of: label) != nil
    }

    public func fencing(of label: HandoffLabel) -> HandoffFencing? {
        book.fencing(of: label)
    }

    public func fencing() -> AsyncStream<HandoffFencing> {
        book.fencing()
    }

    /// At a graceful shutdown, after the handoffs: with no checkpoint left, the status is removed (nothing is left to
    /// release); with some left (they were not replaced by handoffs), a death notice releases them to successors
    /// now, as the Will would after a crash. The DISCONNECT that follows discards the Will.
    func retireStatus(timeout: Duration) async {
        // A participant that never connected (its connect failed) has no status to retire.
        guard router.options.willDelay != nil, client.connectionNumber > 0 else { return }
        book.retire()
        let empty = book.isEmpty
        let payload = empty ? Data() : InstanceStatus.dead(origin.instance, incarnation: Int(client.connectionNumber)).encoded()
        let (client, topic) = (self.client, topics.instance(origin.instance))
        do {
            try await withDeadline(timeout, operation: "retire this participant's status") {
                try await client.publish(topic, payload: payload, qos: .atLeastOnce, retain: true)
            }
        } catch {
            logger.warning(
                "Could not update this participant's status at shutdown",
                metadata: ["handoff.error": "\(error)", "handoff.checkpoints_left": "\(!empty)"]
            )
        }
    }
}

/// After each connect: reads this participant's own status back (a Will that fired while it was away fences the
/// labels it released), publishes its birth, then allows checkpoints under the new connection's incarnation.
struct Announcer: Sendable {
    let client: MQTTClient
    let topics: HandoffTopics
    let router: HandoffRouter
    let book: CheckpointBook
    let instance: String
    let enabled: Bool
    let logger: Logger

    func announce() async throws {
        guard enabled else { return }
        book.setWritable(nil)
        let incarnation = Int(client.connectionNumber)
        // This instance's own status at QoS 1: a Will published while it was away is queued in its session and
        // routed before the marker below, even if a late copy of an older birth overwrote the retained one since.
        _ = try await client.subscribe(topics.instance(instance), options: MQTTSubscribeOptions(qos: .atLeastOnce))
        // The others' at QoS 0: statuses are retained and read again after every connect, and the broker queues
        // none of them for the sessions of participants that are gone.
        _ = try await client.subscribe(topics.instanceFilter, options: MQTTSubscribeOptions(qos: .atMostOnce))
        let timeout = router.options.operationTimeout
        try await router.sync(timeout: timeout)
        // A newer connection announces itself; a birth of this one published late would overwrite its Will.
        guard isCurrent(incarnation) else { return }
        let birth = InstanceStatus.online(instance, incarnation: incarnation, released: book.releasedThrough)
        let (client, topic) = (self.client, topics.instance(instance))
        try await withDeadline(timeout, operation: "publish this participant's birth") {
            try await client.publish(
                topic, payload: birth.encoded(), qos: .atLeastOnce, retain: true,
                properties: MQTTPublishProperties(contentType: "application/json")
            )
        }
        guard isCurrent(incarnation) else { return }
        book.setWritable(incarnation)
        logger.debug("Announced this participant", metadata: ["handoff.instance": "\(instance)", "handoff.incarnation": "\(incarnation)"])
    }

    /// Whether the connection of `incarnation` is the one up now.
    private func isCurrent(_ incarnation: Int) -> Bool {
        client.isConnected && Int(client.connectionNumber) == incarnation
    }

    /// ``announce()`` until it succeeds, the connection changes or the task is cancelled: until then nothing is
    /// checkpointed, and no heartbeat tells successors this participant lives.
    func announceRetrying() async {
        var delay = Duration.milliseconds(500)
        while !Task.isCancelled {
            let incarnation = Int(client.connectionNumber)
            do {
                try await announce()
                return
            } catch {
                logger.warning(
                    "Could not announce this participant; retrying",
                    metadata: ["handoff.error": "\(error)", "handoff.retry_in": "\(delay)"])
            }
            do { try await Task.sleep(for: delay) } catch { return }
            guard isCurrent(incarnation) else { return }
            delay = min(delay * 2, .seconds(10))
        }
    }
}
