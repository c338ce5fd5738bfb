import Foundation

/// One participant of a ``LocalHandoffHub``: the in-process backend (the original's `Handoff.Local`).
///
/// Several transports attach to one hub, typically one per component that hands off or takes over state.
/// Every operation completes at once, so the `timeout` parameters are not needed and are ignored.
public final class LocalHandoffTransport: HandoffTransport {
    /// The hub this participant is attached to.
    public let hub: LocalHandoffHub
    /// This participant's identity; it is never offered handoffs whose `origin.instance` equals its own.
    public let origin: HandoffOrigin
    private let participant: UInt64

    /// Attaches a participant to `hub`.
    ///
    /// - Parameters:
    ///   - hub: The shared store.
    ///   - origin: The participant's identity; give each participant its own `instance`.
    public init(hub: LocalHandoffHub, origin: HandoffOrigin = .current()) {
        self.hub = hub
        self.origin = origin
        self.participant = hub.nextNumber()
    }

    deinit {
        hub.detach(participant: participant)
    }

    /// Starts watching `label`; reports `.available` at once if others' handoffs are waiting. The watch lasts
    /// until ``unwatch(_:)``, another `watch`, or this transport's release, even if the stream is dropped.
    public func watch(_ label: HandoffLabel) async throws -> AsyncStream<HandoffNotice> {
        let (stream, continuation) = AsyncStream<HandoffNotice>.makeStream()
        let participant = participant
        let watcher = LocalHandoffHub.Watcher(instance: origin.instance, continuation: continuation)
        let instance = origin.instance
        let (previous, waiting) = hub.store.withLock { store in
            let previous = store.watchers[label]?[participant]
            store.watchers[label, default: [:]][participant] = watcher
            let waiting = (store.waiting[label] ?? [:]).values.contains { $0.origin.instance != instance }
            return (previous, waiting)
        }
        previous?.continuation.finish()
        if waiting { continuation.yield(.available(label)) }
        return stream
    }

    /// Stops watching `label` and finishes its stream; does nothing when it is not watched.
    public func unwatch(_ label: HandoffLabel) async throws {
        let participant = participant
        let removed = hub.store.withLock { store in
            let removed = store.watchers[label]?.removeValue(forKey: participant)
            if store.watchers[label]?.isEmpty == true { store.watchers[label] = nil }
            return removed
        }
        removed?.continuation.finish()
    }

    /// Others' handoffs waiting under a watched `label`, in (createdAt, id) order.
    public func pending(_ label: HandoffLabel) async throws -> [HandoffEnvelope] {
        let participant = participant
        let instance = origin.instance
        let envelopes = try hub.store.withLock { store throws(HandoffError) in
            guard store.watchers[label]?[participant] != nil else { throw .notSubscribed(label) }
            return (store.waiting[label] ?? [:]).values.filter { $0.origin.instance != instance }
        }
        return envelopes.sorted(by: HandoffEnvelope.precedes)
    }

    /// Takes the handoff out of the waiting handoffs if it is still there; `true` for the one participant that
    /// did.
    public func claim(_ envelope: HandoffEnvelope, timeout: Duration) async throws -> Bool {
        hub.store.withLock { store in
            store.waiting[envelope.label]?.removeValue(forKey: envelope.id) != nil
        }
    }

    /// Stores a handoff this participant won as waiting again and notifies the label's watchers.
    public func release(_ envelope: HandoffEnvelope, timeout: Duration) async throws {
        hub.add(envelope)
    }

    /// Stores `envelope` as waiting and notifies the label's other watchers.
    public func initiate(_ envelope: HandoffEnvelope, timeout: Duration) async throws {
        hub.add(envelope)
    }

    /// Moves `envelope` from the waiting handoffs to the dead letters; does nothing when it is no longer
    /// waiting (another participant claimed or dead-lettered it first).
    public func deadLetter(
        _ envelope: HandoffEnvelope,
        reason: HandoffRejection.Reason,
        detail: String,
        timeout: Duration
    ) async throws {
        let letter = DeadLetter(
            label: envelope.label,
            id: envelope.id.rawValue,
            reason: reason,
            detail: detail,
            rejectedBy: origin.instance,
            rejectedAt: Date(),
            payload: envelope.encoded()
        )
        hub.store.withLock { store in
            guard store.waiting[envelope.label]?.removeValue(forKey: envelope.id) != nil else { return }
            store.deadLetters[envelope.label, default: []].append(letter)
        }
    }

    /// The dead letters stored for `label`, oldest first.
    public func deadLetters(_ label: HandoffLabel, timeout: Duration) async throws -> [DeadLetter] {
        hub.deadLetters(label)
    }
}
