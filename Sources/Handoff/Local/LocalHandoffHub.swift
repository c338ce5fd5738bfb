import Foundation
import Synchronization

/// The shared in-memory store of the in-process backend (the original's `Handoff.Local`): the waiting
/// handoffs and the dead letters of every label, and who watches which label.
///
/// Attach participants with ``LocalHandoffTransport/init(hub:origin:)``; all of them see the same handoffs.
/// Every operation is atomic, so exactly one of several participants claiming a handoff wins. Nothing is
/// persisted: the hub lives as long as the process.
public final class LocalHandoffHub: Sendable {
    struct Watcher: Sendable {
        let instance: String
        let continuation: AsyncStream<HandoffNotice>.Continuation
    }

    struct Store: Sendable {
        var waiting: [HandoffLabel: [HandoffID: HandoffEnvelope]] = [:]
        var deadLetters: [HandoffLabel: [DeadLetter]] = [:]
        /// Per label, the watching participants by participant number.
        var watchers: [HandoffLabel: [UInt64: Watcher]] = [:]
    }

    let store = Mutex(Store())
    private let counter = Atomic<UInt64>(0)

    /// Creates an empty hub.
    public init() {}

    /// Every handoff waiting under `label`, whoever made it, in (createdAt, id) order.
    public func waiting(_ label: HandoffLabel) -> [HandoffEnvelope] {
        store.withLock { Array(($0.waiting[label] ?? [:]).values) }.sorted(by: HandoffEnvelope.precedes)
    }

    /// The dead letters stored for `label`, oldest first.
    public func deadLetters(_ label: HandoffLabel) -> [DeadLetter] {
        store.withLock { $0.deadLetters[label] ?? [] }
    }

    /// Delivers a raw payload to `label`'s handoff location, as a broker would deliver any message published
    /// there: a readable envelope for that label waits like an initiated one; anything else is dead-lettered
    /// (rejected by `"local-hub"`) and reported to the label's watchers as ``HandoffNotice/rejected(_:)``.
    ///
    /// This is how foreign or damaged messages are simulated in tests.
    public func deliverRawPayload(_ payload: Data, to label: HandoffLabel) {
        let envelope: HandoffEnvelope
        do {
            envelope = try HandoffEnvelope.decode(payload)
            guard envelope.label == label else {
                rejectRaw(
                    payload,
                    label: label,
                    id: envelope.id.rawValue,
                    reason: .labelMismatch,
                    detail: "the header's label '\(envelope.label)' is not the location's label '\(label)'"
                )
                return
            }
        } catch {
            rejectRaw(payload, label: label, id: "", reason: error.reason, detail: error.detail)
            return
        }
        add(envelope)
    }

    private func rejectRaw(
        _ payload: Data,
        label: HandoffLabel,
        id: String,
        reason: HandoffRejection.Reason,
        detail: String
    ) {
        let letter = DeadLetter(
            label: label,
            id: id,
            reason: reason,
            detail: detail,
            rejectedBy: "local-hub",
            rejectedAt: Date(),
            payload: payload
        )
        let rejection = HandoffRejection(
            label: label,
            id: id,
            reason: reason,
            detail: detail,
            disposition: .deadLettered
        )
        let watchers = store.withLock { store in
            store.deadLetters[label, default: []].append(letter)
            return Array((store.watchers[label] ?? [:]).values)
        }
        for watcher in watchers { watcher.continuation.yield(.rejected(rejection)) }
    }

    /// Stores a waiting handoff and tells the label's watchers, except its origin.
    func add(_ envelope: HandoffEnvelope) {
        let toNotify = store.withLock { store in
            store.waiting[envelope.label, default: [:]][envelope.id] = envelope
            return (store.watchers[envelope.label] ?? [:]).values.filter {
                $0.instance != envelope.origin.instance
            }
        }
        for watcher in toNotify { watcher.continuation.yield(.available(envelope.label)) }
    }

    func nextNumber() -> UInt64 {
        counter.wrappingAdd(1, ordering: .relaxed).newValue
    }

    /// Forgets every watch of a participant and finishes its streams.
    func detach(participant: UInt64) {
        let removed = store.withLock { store in
            var removed: [Watcher] = []
            for label in Array(store.watchers.keys) {
                if let watcher = store.watchers[label]?.removeValue(forKey: participant) { removed.append(watcher) }
                if store.watchers[label]?.isEmpty == true { store.watchers[label] = nil }
            }
            return removed
        }
        for watcher in removed { watcher.continuation.finish() }
    }
}
