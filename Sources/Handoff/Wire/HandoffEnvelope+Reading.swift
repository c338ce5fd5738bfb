import Foundation

extension HandoffEnvelope {
    /// Reads a message found on the topic of handoff `topicID` of `topicLabel` as docs/PROTOCOL.md §4 "Reading an
    /// envelope" and §10.4 order the checks: the format (1–7), the topic (8), then the signature and the encryption
    /// (9–10, keyed). The first check that fails gives the reason. The returned envelope's data is decrypted; its
    /// wire form is `payload`, verbatim (what dead letters, give-backs and restores store).
    ///
    /// - Throws: ``HandoffError`` (``HandoffError/Code/unreadableEnvelope``) with the reason of the first failing check.
    package static func read(
        _ payload: Data, topicLabel: HandoffLabel, topicID: String, keys: HandoffKeySet?, maximumSize: Int
    ) throws(HandoffError) -> HandoffEnvelope {
        let decoded = try decode(payload, maximumSize: maximumSize)
        guard decoded.id.rawValue == topicID, decoded.label == topicLabel else {
            throw HandoffError.unreadableEnvelope(
                .labelMismatch,
                detail: "the envelope names '\(decoded.label)'/\(decoded.id) but was published on the topic of '\(topicLabel)'/\(topicID)"
            )
        }
        var opened = try open(decoded, keys: keys)
        // An incarnation means something on checkpoints only (docs/PROTOCOL.md §9).
        opened.incarnation = nil
        return opened.withReceivedPayload(payload)
    }

    /// Reads a message found on the checkpoint topic of `topicInstance` for `topicLabel` (docs/PROTOCOL.md §9.2): as
    /// ``read(_:topicLabel:topicID:keys:maximumSize:)``, with the topic check of a checkpoint (its label, its origin's
    /// instance, an incarnation).
    package static func readCheckpoint(
        _ payload: Data, topicLabel: HandoffLabel, topicInstance: String, keys: HandoffKeySet?, maximumSize: Int
    ) throws(HandoffError) -> HandoffEnvelope {
        let decoded = try decode(payload, maximumSize: maximumSize)
        guard decoded.label == topicLabel, decoded.origin.instance == topicInstance, decoded.incarnation != nil else {
            let detail =
                decoded.incarnation == nil
                ? "a checkpoint without an incarnation"
                : "the checkpoint names '\(decoded.label)' from instance \(decoded.origin.instance) but was published on the "
                    + "checkpoint topic of '\(topicLabel)' of instance \(topicInstance)"
            throw HandoffError.unreadableEnvelope(.labelMismatch, detail: detail)
        }
        return try open(decoded, keys: keys).withReceivedPayload(payload)
    }

    /// Checks 9 and 10 (docs/PROTOCOL.md §10.4), keyed or not.
    private static func open(_ envelope: HandoffEnvelope, keys: HandoffKeySet?) throws(HandoffError) -> HandoffEnvelope {
        guard let keys else { return try HandoffKeySet.openUnkeyed(envelope) }
        return try keys.open(envelope)
    }
}
