/// A transport that keeps checkpoints of live state, so that a process killed without warning (SIGKILL, OOM kill,
/// power loss) still hands something off: its latest checkpoints are released to successors when the process is
/// known dead, and claimed by the same exactly-once rule as handoffs (``HandoffTransport/pending(_:)`` lists them,
/// ``HandoffTransport/claim(_:timeout:)`` claims them; ``ClaimedHandoff/isCheckpoint`` tells them apart).
///
/// A participant whose checkpoints were released while it was alive (it was only partitioned from the broker for
/// longer than the death-detection delay) is **fenced** for those labels: successors own that state now. Its
/// checkpoints of them are refused (``HandoffCheckpointOutcome/fenced``) and it must not hand them off either;
/// ``fencing()`` reports each label once. What to do then is the application's call: usually drop that state (or
/// restart), since a successor has merged its last checkpoint.
public protocol HandoffCheckpointing: HandoffTransport {
    /// Stores `envelope` as this participant's checkpoint of `envelope.label`, replacing its previous one, and
    /// returns once the store has acknowledged it. With `onlyIfChanged`, a state equal to the last one stored (same
    /// data, version and content type) is not sent again.
    ///
    /// - Throws: ``HandoffError/transportUnavailable(_:underlying:)`` while the store is unreachable (nothing is written: a
    ///   checkpoint queued during a partition could reach the store after successors took the label over).
    func checkpoint(_ envelope: HandoffEnvelope, onlyIfChanged: Bool, timeout: Duration) async throws -> HandoffCheckpointOutcome
    /// Removes this participant's checkpoint of `label`: after its handoff is stored (a successor must never merge
    /// both), or when the state it held is gone.
    func removeCheckpoint(_ label: HandoffLabel, timeout: Duration) async throws
    /// Whether successors took over this participant's checkpoint of `label`.
    func isFenced(_ label: HandoffLabel) -> Bool
    /// Why `label` is fenced; `nil` while it is not.
    func fencing(of label: HandoffLabel) -> HandoffFencing?
    /// A new stream of the labels fenced from now on, each reported once.
    func fencing() -> AsyncStream<HandoffFencing>
}

/// What ``HandoffCheckpointing/checkpoint(_:onlyIfChanged:timeout:)`` did.
public enum HandoffCheckpointOutcome: String, Sendable, Hashable, CaseIterable {
    /// The checkpoint was stored.
    case written
    /// The state equals the last checkpoint stored: nothing was sent.
    case unchanged
    /// Successors took this label's state over: nothing was sent, and nothing may be handed off for it.
    case fenced
}

/// A label whose state this participant no longer owns: successors took over its checkpoint.
public struct HandoffFencing: Sendable, Hashable, CustomStringConvertible {
    /// The label.
    public var label: HandoffLabel
    /// Why, for people: whose death notice or which claim took it.
    public var reason: String

    /// Creates a fencing report.
    public init(label: HandoffLabel, reason: String) {
        self.label = label
        self.reason = reason
    }

    public var description: String { "'\(label)' fenced: \(reason)" }
}
