import Handoff
import Synchronization

/// What this participant knows of its own checkpoints (docs/PROTOCOL.md §9): the last one stored per label, under
/// which incarnation, which labels are fenced, and whether writing is allowed now.
///
/// Writing is allowed only on a connection whose status this participant has read back (after each connect it reads
/// its own status topic up to an ordering marker before it publishes its birth): a checkpoint must never be stamped
/// with an incarnation whose Will already released the label.
final class CheckpointBook: Sendable {
    struct Stored: Sendable {
        var label: HandoffLabel
        /// SHA-256 of the data, the version and the content type: what "unchanged" compares.
        var fingerprint: String
        var incarnation: Int
    }

    struct State {
        /// Acknowledged checkpoints, by label level: what "unchanged" compares with.
        var stored: [String: Stored] = [:]
        /// Labels with a checkpoint sent (acknowledged or not) and not removed: what may be on the broker, and the
        /// incarnation of the latest one sent (a death notice of that incarnation releases it, acknowledged or not).
        var sent: [String: (label: HandoffLabel, incarnation: Int)] = [:]
        var fenced: [String: HandoffFencing] = [:]
        /// This instance's checkpoints up to this incarnation were released by its status.
        var releasedThrough = 0
        /// The incarnation checkpoints are written under now; `nil` while writing is not allowed.
        var writableIncarnation: Int?
        var listeners: [UInt64: AsyncStream<HandoffFencing>.Continuation] = [:]
        var nextListener: UInt64 = 1
        /// Shutting down: this participant releases its own checkpoints now, which fences nothing.
        var retiring = false
    }

    let state = Mutex(State())

    /// Stops writing for good: what this participant releases from now on is its own doing, not a fencing.
    func retire() {
        state.withLock { state in
            state.retiring = true
            state.writableIncarnation = nil
        }
    }

    /// Allows writing under `incarnation` (after the birth of that connection), or stops it (`nil`).
    func setWritable(_ incarnation: Int?) {
        state.withLock { state in
            guard !state.retiring else { return }
            state.writableIncarnation = incarnation
        }
    }

    /// The incarnation checkpoints are written under now; `nil` while writing is not allowed.
    var writableIncarnation: Int? { state.withLock { $0.writableIncarnation } }

    /// What successors were told was released so far (repeated in every birth).
    var releasedThrough: Int { state.withLock { $0.releasedThrough } }

    /// Whether no checkpoint of this participant may be on the broker.
    var isEmpty: Bool { state.withLock { $0.sent.isEmpty } }

    /// Whether a checkpoint of `label` may be on the broker.
    func mayHaveCheckpoint(_ label: HandoffLabel) -> Bool {
        state.withLock { $0.sent[label.topicLevel] != nil }
    }

    func fencing(of label: HandoffLabel) -> HandoffFencing? {
        state.withLock { $0.fenced[label.topicLevel] }
    }

    /// Fences what a loss of ownership took; returns the labels newly fenced (reported once each).
    @discardableResult
    func record(_ loss: HandoffRouter.OwnershipLoss) -> [HandoffFencing] {
        let (fenced, listeners) = state.withLock { state -> ([HandoffFencing], [AsyncStream<HandoffFencing>.Continuation]) in
            var fenced: [HandoffFencing] = []
            guard !state.retiring else { return ([], []) }
            switch loss {
            case .released(let through, let status):
                state.releasedThrough = max(state.releasedThrough, through)
                let why =
                    status.state == .dead
                    ? "this instance's death notice for connection \(status.incarnation) released its checkpoints up to connection \(through)"
                    : "this instance's status says its checkpoints up to connection \(through) were released"
                for (level, sent) in state.sent where sent.incarnation <= through && state.fenced[level] == nil {
                    let fencing = HandoffFencing(label: sent.label, reason: why)
                    state.fenced[level] = fencing
                    fenced.append(fencing)
                }
            case .checkpointClaimed(let label, let claimer):
                guard state.fenced[label.topicLevel] == nil else { break }
                let fencing = HandoffFencing(label: label, reason: "instance \(claimer) claimed this instance's checkpoint")
                state.fenced[label.topicLevel] = fencing
                fenced.append(fencing)
            }
            return (fenced, fenced.isEmpty ? [] : Array(state.listeners.values))
        }
        for fencing in fenced {
            for listener in listeners { listener.yield(fencing) }
        }
        return fenced
    }

    func fencing() -> AsyncStream<HandoffFencing> {
        let (stream, continuation) = AsyncStream.makeStream(of: HandoffFencing.self)
        let id = state.withLock { state in
            defer { state.nextListener += 1 }
            state.listeners[state.nextListener] = continuation
            return state.nextListener
        }
        continuation.onTermination = { [weak self] _ in
            _ = self?.state.withLock { $0.listeners.removeValue(forKey: id) }
        }
        return stream
    }

    func finish() {
        let listeners = state.withLock { state in
            defer { state.listeners = [:] }
            return Array(state.listeners.values)
        }
        for listener in listeners { listener.finish() }
    }

    /// What to do with a checkpoint of `label` with `fingerprint`.
    enum Decision {
        case write(incarnation: Int)
        case skip(HandoffCheckpointOutcome)
        case notWritable
    }

    func decide(_ label: HandoffLabel, fingerprint: String, onlyIfChanged: Bool) -> Decision {
        state.withLock { state in
            guard state.fenced[label.topicLevel] == nil else { return .skip(.fenced) }
            guard let incarnation = state.writableIncarnation else { return .notWritable }
            if onlyIfChanged, state.stored[label.topicLevel]?.fingerprint == fingerprint { return .skip(.unchanged) }
            state.sent[label.topicLevel] = (label, incarnation)
            return .write(incarnation: incarnation)
        }
    }

    /// Records a stored checkpoint; `false` if the label was fenced meanwhile (the write raced a release).
    func stored(_ label: HandoffLabel, _ stored: Stored) -> Bool {
        state.withLock { state in
            state.stored[label.topicLevel] = stored
            return state.fenced[label.topicLevel] == nil && stored.incarnation > state.releasedThrough
        }
    }

    /// Forgets the stored checkpoint of `label` (it was cleared from the broker): the next one is written even if unchanged.
    func forgetStored(_ label: HandoffLabel) {
        _ = state.withLock { $0.stored.removeValue(forKey: label.topicLevel) }
    }

    func removed(_ label: HandoffLabel) {
        state.withLock { state in
            state.stored[label.topicLevel] = nil
            state.sent[label.topicLevel] = nil
        }
    }
}
